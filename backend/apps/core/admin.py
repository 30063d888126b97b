from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.models import FailedTask
from apps.core.services import failed_task_requeue


@admin.register(FailedTask)
class FailedTaskAdmin(admin.ModelAdmin):
    list_display = ("task_name", "task_id", "failed_at", "requeued_at", "exception")
    list_filter = ("task_name",)
    search_fields = ("task_id", "task_name", "exception")
    readonly_fields = [f.name for f in FailedTask._meta.fields]
    actions = ["requeue"]

    @admin.action(description="Re-enqueue the selected tasks")
    def requeue(self, request: HttpRequest, queryset: QuerySet[FailedTask]) -> None:
        count = 0
        for failed_task in queryset:
            failed_task_requeue(failed_task=failed_task)
            count += 1
        self.message_user(request, f"Re-enqueued {count} task(s).", messages.SUCCESS)


class BrakedAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, saying so when the failed-login brake refused."""

    def get_invalid_login_error(self) -> ValidationError:
        if getattr(self.request, "login_braked", False):
            return ValidationError(
                "Too many failed logins for this account or address; try again later.",
                code="too_many_attempts",
            )
        return super().get_invalid_login_error()


admin.site.login_form = BrakedAdminAuthenticationForm

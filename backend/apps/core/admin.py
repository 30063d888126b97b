from django.contrib import admin, messages
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

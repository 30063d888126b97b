from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        # Registers the deploy checks with Django's check framework.
        from apps.core import checks  # noqa: F401
        from apps.core.db.pooling import apply_role_settings
        from apps.core.drf.token_cache import connect_signals

        # Deleting a token (or changing its user) drops it from every process's cache.
        connect_signals()
        # Once per migrate (sender: this app), on the database migrated.
        post_migrate.connect(apply_role_settings, sender=self)

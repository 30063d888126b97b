"""Core models: failed Celery tasks, kept until an operator deals with them."""

from __future__ import annotations

from django.db import models


class FailedTask(models.Model):
    """A task that failed for good (retries exhausted or an unexpected error)."""

    task_name = models.CharField(max_length=200, db_index=True)
    task_id = models.CharField(max_length=64, db_index=True)
    queue = models.CharField(max_length=200, blank=True)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    exception = models.TextField()
    traceback = models.TextField(blank=True)
    failed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    requeued_at = models.DateTimeField(null=True, blank=True)
    requeued_task_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-failed_at"]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}]"

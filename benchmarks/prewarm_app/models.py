"""The model the prewarm benchmark's jobs read."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Article(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    published = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "prewarm_app"

    def __str__(self) -> str:
        return self.title

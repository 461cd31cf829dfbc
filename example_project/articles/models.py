"""One model: articles the background tasks count, thumbnail and mail around."""

from __future__ import annotations

from django.db import models


class Article(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField()
    # Filled in by background tasks: ``count_words`` and ``make_thumbnail``.
    word_count = models.PositiveIntegerField(null=True, blank=True, editable=False)
    thumbnail = models.BinaryField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return self.title

"""Admin of the example: articles, with what the background tasks stored on them."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from .models import Article


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = ["title", "word_count", "has_thumbnail", "created"]
    search_fields = ["title", "body"]
    date_hierarchy = "created"
    readonly_fields = ["word_count", "thumbnail_preview", "created"]
    fields = ["title", "body", "word_count", "thumbnail_preview", "created"]

    @admin.display(boolean=True, description="thumbnail")
    def has_thumbnail(self, obj: Article) -> bool:
        return obj.thumbnail is not None

    @admin.display(description="thumbnail")
    def thumbnail_preview(self, obj: Article) -> str:
        if obj.pk is None or obj.thumbnail is None:
            return "-"
        url = reverse("thumbnail", args=[obj.pk])
        return format_html('<img src="{}" alt="thumbnail of {}">', url, obj.title)

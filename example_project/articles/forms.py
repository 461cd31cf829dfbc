"""Forms of the example's pages: one per thing a visitor can enqueue, plus a new article."""

from __future__ import annotations

from django import forms

from .models import Article
from .tasks import MAX_REPORT_SECONDS
from .thumbnails import MAX_SIZE, MIN_SIZE


class ArticleForm(forms.ModelForm):
    count_now = forms.BooleanField(
        required=False, initial=True, label="Count its words in the background right away"
    )

    class Meta:
        model = Article
        fields = ["title", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 8})}


class ArticleActionForm(forms.Form):
    """``count_words``, ``archive`` and the raw Resque push: just an article."""

    article = forms.ModelChoiceField(queryset=Article.objects.all())


class ThumbnailForm(ArticleActionForm):
    size = forms.IntegerField(min_value=MIN_SIZE, max_value=MAX_SIZE, initial=64)


class DigestForm(forms.Form):
    email = forms.EmailField(initial="reader@example.com")


class SlowReportForm(forms.Form):
    seconds = forms.IntegerField(min_value=0, max_value=MAX_REPORT_SECONDS, initial=15)


class FlakyForm(forms.Form):
    n = forms.IntegerField(initial=1, min_value=0, max_value=1_000_000)

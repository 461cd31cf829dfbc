"""URLs of the articles app."""

from __future__ import annotations

from django.urls import path, re_path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("articles/new/", views.article_new, name="article_new"),
    path("articles/<int:pk>/thumbnail.png", views.thumbnail, name="thumbnail"),
    re_path(r"^results/(?P<result_id>[A-Za-z0-9_-]{1,64})/$", views.result_detail,
            name="result"),
]

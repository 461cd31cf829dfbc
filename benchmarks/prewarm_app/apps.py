from django.apps import AppConfig


class PrewarmAppConfig(AppConfig):
    name = "benchmarks.prewarm_app"
    label = "prewarm_app"
    default_auto_field = "django.db.models.AutoField"

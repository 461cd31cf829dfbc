"""``manage.py seed_articles``: sample articles for the example to work on."""

from __future__ import annotations

import random
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from articles.models import Article

TOPICS = [
    "Resque", "Redis", "Django", "fork()", "queues", "workers", "retries", "heartbeats",
    "Lua scripts", "signals", "process groups", "JSON", "back-pressure", "idempotency",
    "dead letters", "cron", "SQLite", "thumbnails", "digests", "graceful shutdown",
]
WORDS = [
    "job", "queue", "worker", "fork", "child", "parent", "redis", "list", "push", "pop", "retry",
    "fail", "succeed", "result", "payload", "class", "args", "namespace", "heartbeat", "signal",
    "term", "kill", "grace", "period", "timeout", "backoff", "json", "lua", "script", "atomic",
    "pipeline", "latency", "throughput", "django", "task", "enqueue",
]


def sample_body(rng: random.Random, topic: str) -> str:
    """A few paragraphs of plausible filler about ``topic``."""
    paragraphs = []
    for _ in range(rng.randint(2, 4)):
        sentences = []
        for _ in range(rng.randint(2, 5)):
            words = rng.sample(WORDS, rng.randint(5, 12))
            sentences.append(f"{topic} {' '.join(words)}.".capitalize())
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


class Command(BaseCommand):
    help = "Create sample articles (20 by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=20, help="how many (default 20)")
        parser.add_argument("--if-empty", action="store_true",
                            help="do nothing when there are articles already")
        parser.add_argument("--seed", type=int, default=42, help="random seed")

    def handle(self, *args: Any, count: int, if_empty: bool, seed: int, **options: Any) -> None:
        verbose = options["verbosity"] > 0
        if if_empty and Article.objects.exists():
            if verbose:
                self.stdout.write("There are articles already; not seeding.")
            return
        rng = random.Random(seed)
        articles = [
            Article(title=f"{i + 1:02d}. Notes on {TOPICS[i % len(TOPICS)]}",
                    body=sample_body(rng, TOPICS[i % len(TOPICS)]))
            for i in range(count)
        ]
        Article.objects.bulk_create(articles)
        if verbose:
            self.stdout.write(self.style.SUCCESS(f"Created {count} articles."))

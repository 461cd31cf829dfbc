"""The job queue monitor in the Django admin: what resque-web gives Resque, for staff only.

Pages (overview, queues, working, workers, failed, scheduled, results, stats), a JSON and a
Prometheus endpoint, all read through the broker's inspection API and acted on through its
management API: no view touches Redis directly. ``jobqueue.admin`` mounts it at
``/admin/jobqueue/`` on whatever admin site registers ``jobqueue.models.Monitor``.
"""

"""backfill: fills a book catalog month by month.

The Celery app is :data:`backfill.celery.app` (``celery -A backfill`` finds it
there); importing this package runs nothing.
"""

"""The Celery app shared by worker and beat. Task modules live in each app's ``tasks.py``.

Every task runs under the soft and hard time limits of the settings (``CELERY_TASK_SOFT_TIME_LIMIT``,
``CELERY_TASK_TIME_LIMIT``, per task ``CELERY_TASK_ANNOTATIONS``). The prefork pool (production's
default) enforces both; the solo pool (the embedded default, ``make run``) enforces none, so here
an alarm raises ``SoftTimeLimitExceeded`` in the task at its soft limit, as prefork would. (A hard
limit would have to kill the only process there is; the solo pool has none.)
"""

import os
import signal
import threading

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _runs_in_solo_pool(task) -> bool:
    """The task runs in the worker's own main thread (solo pool), not eagerly nor in a child."""
    from billiard.process import current_process

    return (
        not task.request.is_eager
        and threading.current_thread() is threading.main_thread()
        and current_process().name == "MainProcess"
        and hasattr(signal, "setitimer")
    )


def _soft_time_limit(task) -> float | None:
    requested = (task.request.timelimit or (None, None))[1]
    return requested or task.soft_time_limit or app.conf.task_soft_time_limit or None


def _soft_limit_reached(signum, frame):
    raise SoftTimeLimitExceeded()


@task_prerun.connect
def _arm_soft_time_limit(task=None, **kwargs) -> None:
    if task is not None and _runs_in_solo_pool(task):
        seconds = _soft_time_limit(task)
        if seconds:
            signal.signal(signal.SIGALRM, _soft_limit_reached)
            signal.setitimer(signal.ITIMER_REAL, float(seconds))


@task_postrun.connect
def _disarm_soft_time_limit(task=None, **kwargs) -> None:
    if task is not None and _runs_in_solo_pool(task):
        signal.setitimer(signal.ITIMER_REAL, 0)

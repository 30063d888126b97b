"""The project's settings plus an app with a migration that takes 2 s."""

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.support.slow_migration"]

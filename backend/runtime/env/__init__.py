"""The one registry of environment variables, and typed readers over it.

Every variable the project reads (Python or the entrypoint script) is declared once,
in `variables.py` (the data); `schema.py` holds the kinds, parsing and the rules one
value meets, `loader.py` the rules between variables and `load()`. The docs and
`.env.example` are generated from the declarations (`docs.py`, `make docs`).
`python -m runtime.env` validates the environment.
"""

from runtime.env.loader import (
    Config,
    Problem,
    format_problems,
    load,
    load_or_exit,
    main,
)
from runtime.env.schema import (
    DATABASE_VARIABLES,
    LOCAL_HOSTS,
    PUBLIC_SECRETS,
    SECRET_KEY_MIN_LENGTH,
    ConfigError,
    Kind,
    Sentinels,
    Var,
    check_database_vendor,
    check_hosts,
    check_secret_key,
    parse_bool,
    parse_value,
    sentinels_parse,
)
from runtime.env.variables import GROUPS, REGISTRY, VARIABLES

__all__ = [
    "DATABASE_VARIABLES",
    "GROUPS",
    "LOCAL_HOSTS",
    "PUBLIC_SECRETS",
    "REGISTRY",
    "SECRET_KEY_MIN_LENGTH",
    "VARIABLES",
    "Config",
    "ConfigError",
    "Kind",
    "Problem",
    "Sentinels",
    "Var",
    "check_database_vendor",
    "check_hosts",
    "check_secret_key",
    "format_problems",
    "load",
    "load_or_exit",
    "main",
    "parse_bool",
    "parse_value",
    "sentinels_parse",
]

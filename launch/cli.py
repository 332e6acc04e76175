"""Command lines of the absl programs (launch/, study/): bad input ends in one line, not a traceback.

    from launch import cli
    _CONFIG = cli.define_config_file("configs/finetune.py")   # programs with a --config file
    ...
    if __name__ == "__main__":
        cli.run(main)                                          # instead of absl's app.run(main)

Why: ml_collections' config flags raise a bare AttributeError for an unknown field
(`--config.nonexistent_field=1`), while the flag is defined or parsed, and defer a missing config
file (`--config=configs/nope.py`) to the config's first use; both ended in 40-55-line tracebacks.
absl prints two lines and exits 1 for its own flag errors. Here every one of them, and any
`UserFacingError` that `main` lets through, prints one `error: ...` line and exits with status 2.
"""
from __future__ import annotations

import re
import sys
from typing import Callable, NoReturn

from absl import app, flags

from errors import UserFacingError

FIELDS_HINT = "configs/base.py lists every field"


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _overrides(argv, name: str) -> list[str]:
    return [a for a in argv if re.match(rf"^--?(no)?{re.escape(name)}\.", a)]


def _unknown_field(e: Exception, argv, name: str) -> str:
    """The override that names no field. ml_collections' message holds the missing key (and a guess)."""
    from networks.factory import RENAMED_FIELDS, renamed_field_message

    text = str(e)
    words = set(re.findall(r"\w+", text))
    guess = re.search(r'Did you mean "(\w+)"', text)
    for arg in _overrides(argv, name):
        path = arg.split("=", 1)[0].lstrip("-").split(".", 1)[1]
        if path in RENAMED_FIELDS and path in words:
            return f"{arg}: {renamed_field_message(path)}"
        if words & set(path.split(".")):
            hint = f"did you mean {guess.group(1)}? " if guess else ""
            return f"{arg}: the config has no field {name}.{path} ({hint}{FIELDS_HINT})."
    return f"an override --{name}.<field> names no field of the config ({' '.join(text.split())}; {FIELDS_HINT})."


def _missing_file(e: Exception, name: str) -> str:
    text = str(e)
    path = re.search(r"No such file or directory: '([^']+)'", text)
    if path:
        return f"--{name}={path.group(1)}: no such config file (the config files are in configs/)."
    return f"--{name}: cannot load the config file: {' '.join(text.split())}"


def define_config_file(default: str, help_string: str = "Config file (see configs/).", name: str = "config"):
    """ml_collections' DEFINE_config_file; an override that names no field exits with one line.

    The flag is parsed here already when the command line gives no --config (the default file
    is loaded with the overrides), so an unknown field can fail at definition.
    """
    from ml_collections import config_flags

    try:
        return config_flags.DEFINE_config_file(name, default, help_string)
    except (AttributeError, KeyError) as e:
        fail(_unknown_field(e, sys.argv, name))


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with every error as one line (app.run's `flags_parser`)."""
    from ml_collections.config_flags.config_flags import is_config_flag

    config_names = [n for n in flags.FLAGS if is_config_flag(flags.FLAGS[n])]
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:
        fail(f"{e} (--helpshort lists the flags).")
    except (AttributeError, KeyError) as e:
        fail(_unknown_field(e, argv, config_names[0] if config_names else "config"))
    except OSError as e:
        fail(_missing_file(e, config_names[0] if config_names else "config"))
    for n in config_names:       # a missing file surfaces only when the config is first read
        try:
            flags.FLAGS[n].value.keys()
        except OSError as e:
            fail(_missing_file(e, n))
        except AttributeError:     # a config that is not a ConfigDict: not this helper's business
            pass
    return rest


def settings_from_flags(name: str = "config"):
    """What the command line changed in the file of config flag `name` (launch/run_names.py Settings).

    Called before anything reads or changes the config (check_config resolves η per dataset), so
    that only the command line's own changes count."""
    from ml_collections.config_flags import config_flags

    from launch.run_names import settings_of

    flag = flags.FLAGS[name]
    config_file = config_flags.get_config_filename(flag)
    defaults = config_flags.ConfigFileFlagParser(name=name).parse(config_file)
    return settings_of(flag.value, config_file, defaults)


def load_config(config_file: str, overrides: list[str], name: str = "config"):
    """(config, Settings) as a program given `--<name>=<config_file> *overrides` would build them.

    For a program that hands a config file and overrides on to another (study.lift to
    launch.finetune): the same errors, as a ConfigError, before the other program starts."""
    from ml_collections.config_flags import config_flags

    from errors import ConfigError
    from launch.run_names import settings_of

    argv = ["load_config", f"--{name}={config_file}", *overrides]
    values = flags.FlagValues()
    try:
        config_flags.DEFINE_config_file(name, None, flag_values=values, sys_argv=argv)
        values(argv)
        cfg = values[name].value
        cfg.keys()                   # a missing file surfaces only when the config is first read
        defaults = config_flags.ConfigFileFlagParser(name=name).parse(config_file)
    except flags.Error as e:
        raise ConfigError(f"{' '.join(str(e).split())}.") from None
    except (AttributeError, KeyError) as e:
        raise ConfigError(_unknown_field(e, argv, name)) from None
    except OSError as e:
        raise ConfigError(_missing_file(e, name)) from None
    return cfg, settings_of(cfg, config_file, defaults)


def run(main: Callable[[list[str]], object]) -> None:
    """absl's app.run(main), with one-line errors for bad flags and for UserFacingError."""
    def guarded(argv):
        try:
            return main(argv)
        except UserFacingError as e:
            fail(str(e))

    app.run(guarded, flags_parser=parse_flags)

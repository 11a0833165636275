"""`action-jax COMMAND [ARGS]`: the package's programs behind one console command.

Each command runs a module as `python -m MODULE` would, so `action-jax COMMAND --help` is that
module's help. Commands other than the named ones are the modules of `action_jax.tools`
(`action-jax build-file-list` runs `action_jax.tools.build_file_list`), found at run time, so a
new tool is a command without an edit here.
"""
from __future__ import annotations

import difflib
import pkgutil
import runpy
import sys
from collections.abc import Sequence

from action_jax import tools, user_errors

# command -> (module, arguments put before the user's)
COMMANDS = {
    'train': ('action_jax.main', ()),
    'test': ('action_jax.main', ('--mode', 'test')),
    'demo': ('action_jax.demo', ()),
    'export': ('action_jax.export', ()),
    'convert': ('action_jax.tools.convert_mmaction2', ()),
    'launch': ('action_jax.launch', ()),
}


def tool_commands() -> dict[str, tuple[str, tuple[str, ...]]]:
    """action_jax.tools.NAME as the command NAME with dashes."""
    return {info.name.replace('_', '-'): (f'{tools.__name__}.{info.name}', ())
            for info in pkgutil.iter_modules(tools.__path__) if not info.name.startswith('_')}


def usage(commands: dict) -> str:
    width = max(map(len, commands))
    lines = [f'  {name:{width}}  python -m {module} {" ".join(extra)}'.rstrip()
             for name, (module, extra) in commands.items()]
    return ('usage: action-jax COMMAND [ARGS]  (action-jax COMMAND --help for its arguments)\n'
            'commands:\n' + '\n'.join(lines))


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {**COMMANDS, **{k: v for k, v in tool_commands().items() if k not in COMMANDS}}
    if not argv or argv[0] in ('-h', '--help'):
        print(usage(commands))
        sys.exit(0 if argv else 2)
    name, args = argv[0], argv[1:]
    if name not in commands:
        close = difflib.get_close_matches(name, commands, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else '; action-jax --help lists them'
        print(f'error: unknown command {name!r}{hint}', file=sys.stderr)
        sys.exit(2)
    module, extra = commands[name]
    sys.argv = [f'action-jax {name}', *extra, *args]
    with user_errors.exit_on_user_error():
        runpy.run_module(module, run_name='__main__', alter_sys=True)


if __name__ == '__main__':
    main()

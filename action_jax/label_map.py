"""Class-name files: one name per line, line i naming class i (MMAction2's label maps)."""
import importlib.resources
import os


def read_label_map(path: str | os.PathLike) -> list[str]:
    """The class names in a label-map file; trailing blank lines are ignored."""
    with open(path, encoding='utf-8') as f:
        names = [line.strip() for line in f]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ValueError(f'label map {os.fspath(path)!r} is empty')
    return names


def load_k400_labels() -> list[str]:
    """The 400 Kinetics-400 class names in MMAction2's order
    (tools/data/kinetics/label_map_k400.txt), bundled with the package."""
    resource = importlib.resources.files('action_jax').joinpath('resources/label_map_k400.txt')
    with importlib.resources.as_file(resource) as path:
        return read_label_map(path)

"""Reading the course's JSON files with errors that say what to do, and writing them whole."""
import json
import pathlib


def read_json(path, missing, what, remedy):
    """The parsed JSON at ``path``.

    ``FileNotFoundError(missing)`` when there is no file; ``ValueError`` saying ``path`` is not ``what``
    (invalid JSON) followed by ``remedy`` when it does not parse.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(missing)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not {what} (invalid JSON: {error}){remedy}") from None


def write_json(path, data):
    """Write ``data`` as indented JSON to ``path`` through a temporary file, so a cut-off write keeps the old file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text(json.dumps(data, indent=1) + "\n")
    temporary.replace(path)
    return path

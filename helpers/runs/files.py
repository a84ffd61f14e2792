"""Reading the course's JSON files with errors that say what to do."""
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

"""Write the JSON Schema of every event and of a catalogue entry to schemas/json/: `python -m schemas.export`.

The files are checked in; a test fails when they and the models drift apart.
"""

import json
import sys
from pathlib import Path
from typing import Any

from .catalogue import Agency
from .events import EVENT_MODELS, wire_schema

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "json"


def exported() -> dict[str, dict[str, Any]]:
    files = {f"{m.type}.v{m.version}.schema.json": wire_schema(m) for m in EVENT_MODELS}
    files["catalogue-agency.schema.json"] = Agency.model_json_schema()
    return files


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(directory: Path = DEFAULT_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, schema in exported().items():
        (directory / name).write_text(render(schema), encoding="utf-8")
    print(f"wrote {len(exported())} schemas to {directory}", file=sys.stderr)


if __name__ == "__main__":
    main()

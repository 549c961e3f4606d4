


def write_results(out, name: str, text: str, data) -> None:
    """``<out>/<name>.md`` (the table) and ``<name>.json`` (every figure), and the table on stdout."""
    import json
    from pathlib import Path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(text)


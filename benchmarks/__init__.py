


def write_results(out, name: str, text: str, data) -> None:
    """``<out>/<name>.md`` (the table) and ``<name>.json`` (every figure), and the table on stdout."""
    from pathlib import Path

    write_table_file(Path(out) / f"{name}.md", text, data)


def write_table_file(path, text: str, data, echo: bool = True) -> None:
    """``path`` (a Markdown table) and the ``.json`` beside it (every figure); with ``echo`` the table on stdout.
    None: stdout only."""
    import json
    from pathlib import Path

    if echo:
        print(text)
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")

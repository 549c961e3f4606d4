"""UI-format workflow → API-format prompt, the way ComfyUI's frontend converts on Queue."""

from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
WEIGHT_SUFFIXES = (".safetensors", ".sft", ".gguf", ".ckpt", ".pt")


def input_specs(info: dict) -> list[tuple[str, list]]:
    specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    order = info.get("input_order") or {}
    names = (order.get("required", []) + order.get("optional", [])) if order else list(specs)
    return [(name, specs[name]) for name in names]


def is_widget(spec: list) -> bool:
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return (isinstance(spec[0], list) or spec[0] in WIDGET_TYPES) and not options.get("forceInput")


def has_seed_control(spec: list) -> bool:
    """The frontend stores a 'control after generate' value after such a widget."""
    return len(spec) > 1 and isinstance(spec[1], dict) and bool(spec[1].get("control_after_generate"))


def to_api(workflow: dict, object_info: dict) -> dict:
    """API prompt of ``workflow``; raises ``KeyError`` naming any node class or input the server lacks."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] not in object_info:
            raise KeyError(f"node class {node['type']!r} (#{node['id']}) is not on this server")
        info = object_info[node["type"]]
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        known = {name for name, _ in input_specs(info)}
        unknown = set(linked) - known
        if unknown:
            raise KeyError(f"{node['type']} #{node['id']} has no input(s) {sorted(unknown)}")
        values, inputs = list(node.get("widgets_values", [])), {}
        for name, spec in input_specs(info):
            if name in linked:
                link = linked[name]
                inputs[name] = [str(link[1]), link[2]]
            elif is_widget(spec):
                if not values:
                    raise KeyError(f"{node['type']} #{node['id']}: no widget value for {name!r}")
                value = values.pop(0)
                is_weight_file = isinstance(value, str) and value.endswith(WEIGHT_SUFFIXES)  # absent on CI
                if isinstance(spec[0], list) and value not in spec[0] and not is_weight_file:
                    raise KeyError(f"{node['type']} #{node['id']}: {value!r} is not an option of {name!r}")
                inputs[name] = value
                if has_seed_control(spec):
                    values.pop(0)
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt

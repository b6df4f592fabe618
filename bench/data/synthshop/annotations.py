"""synthshop's annotation files, formatted exactly like the In-Shop archive's (counts, headers, padding)."""

from __future__ import annotations

from dmlbench.data.synthshop.plan import ItemSpec


def format_partition(rows: list[tuple[str, str, str]]) -> str:
    """list_eval_partition.txt: count, header, then columns padded with spaces like the original.

    >>> print(format_partition([("img/A/id_00000001/01_1_front.jpg", "id_00000001", "train")]), end="")
    1
    image_name item_id evaluation_status
    img/A/id_00000001/01_1_front.jpg                        id_00000001            train
    """
    width = max(len(name) for name, _, _ in rows) + 24
    lines = [str(len(rows)), "image_name item_id evaluation_status"]
    lines += [f"{name:<{width}}{item_id:<23}{status}" for name, item_id, status in rows]
    return "\n".join(lines) + "\n"


def format_attr_items(items: list[ItemSpec]) -> str:
    """list_attr_items.txt: count, header, then `id_XXXXXXXX  1 -1 ...` (values right-aligned).

    >>> from dmlbench.data.synthshop.plan import SIZES, plan_items
    >>> text = format_attr_items(plan_items(SIZES["tiny"], 0)[:1])
    >>> text.splitlines()[:2], text.splitlines()[2].split()[0], len(text.splitlines()[2].split())
    (['1', 'item_id attribute_labels'], 'id_00000001', 33)
    """
    lines = [str(len(items)), "item_id attribute_labels"]
    lines += [item.item_id + " " + " ".join(f"{v:>2d}" for v in item.attribute_vector()) for item in items]
    return "\n".join(lines) + "\n"


def format_attr_cloth(names: list[str]) -> str:
    """list_attr_cloth.txt: count, "attribute_name", one (possibly multi-word) name per line."""
    return "\n".join([str(len(names)), "attribute_name", *names]) + "\n"


def format_item_list(items: list[ItemSpec]) -> str:
    """list_item_inshop.txt: count, then one item id per line (no header line)."""
    return "\n".join([str(len(items)), *(item.item_id for item in items)]) + "\n"


def format_bboxes(rows: list[tuple[str, int, int, tuple[int, int, int, int]]]) -> str:
    """list_bbox_inshop.txt: count, header, `image_name clothes_type pose_type x_1 y_1 x_2 y_2`."""
    width = max(len(name) for name, *_ in rows) + 8
    lines = [str(len(rows)), "image_name clothes_type pose_type x_1 y_1 x_2 y_2"]
    lines += [f"{name:<{width}}{ctype:<3}{pose:<3}{x1:<4}{y1:<4}{x2:<4}{y2}"
              for name, ctype, pose, (x1, y1, x2, y2) in rows]
    return "\n".join(lines) + "\n"


# In-Shop bbox codes: clothes type 1 upper / 2 lower / 3 full body; pose 1 front, 2 side, 3 back,
# 4 zoom-out, 5 zoom-in. Accessories count as "upper" (In-Shop has none; any code is as good).
CLOTHES_TYPE = {"tee": 1, "jacket": 1, "trousers": 2, "skirt": 2, "dress": 3, "shoe": 2, "bag": 1, "hat": 1}
POSE_TYPE = {"front": 1, "side": 2, "back": 3, "full": 4, "additional": 5}

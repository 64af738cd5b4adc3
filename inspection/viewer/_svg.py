"""Geometry of the two pictures the viewer draws as inline SVG: a tree with
its continued path, and the AL(k) chart. Functions here return plain numbers
and strings; the Jinja2 templates turn them into SVG (autoescaped)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aloesim.evaluation import metrics
from aloesim.inspection.show import Point, TreeView

COL, ROW, PAD = 120, 34, 24


@dataclass(slots=True)
class SvgNode:
    x: float
    y: float
    label: str
    href: str | None
    kind: str  # node | stub-continued | stub-stopped
    title: str
    on_path: bool = False


@dataclass(slots=True)
class SvgEdge:
    x1: float
    y1: float
    x2: float
    y2: float
    kind: str  # continued | stopped
    letter: str
    on_path: bool = False


@dataclass(slots=True)
class TreePicture:
    width: int
    height: int
    nodes: list[SvgNode] = field(default_factory=list)
    edges: list[SvgEdge] = field(default_factory=list)
    turns: list[tuple[float, int]] = field(default_factory=list)  # (x, turn) column labels


def tree_picture(tree: TreeView, path_nodes: list | None = None) -> TreePicture:
    """Lay the tree out left to right (one column per turn). Every node has
    two replies: one that continued leads to the next node (or, at the last
    turn, to a green end); one that did not ends in a grey stub. The path the
    conversation took (``path_nodes``, by default the one that went furthest)
    is marked ``on_path``; each node links to the path through it."""
    by_id = {n.id: n for n in tree.nodes}
    path = {n.id for n in (tree.continued_path if path_nodes is None else path_nodes)}
    pic = TreePicture(width=0, height=0)
    leaf = [0]

    def place(node_id: int, depth: int) -> float:
        node = by_id[node_id]
        kids = {by_id[c].branch[-1:]: by_id[c] for c in node.children}
        x = PAD + depth * COL
        ys: list[tuple[str, float, bool, bool]] = []  # letter, y, continued, leads to node
        for letter, which in (("p", "preferred"), ("r", "rejected")):
            cont = node.continued in (which, "both")
            if letter in kids:
                ys.append((letter, place(kids[letter].id, depth + 1), True, True))
            else:
                y = PAD + leaf[0] * ROW
                leaf[0] += 1
                ys.append((letter, y, cont, False))
                stub_on_path = node.id in path and cont and not node.children
                pic.nodes.append(
                    SvgNode(
                        x=x + COL * 0.55,
                        y=y,
                        label=letter,
                        href=f"#node-{node.id}",
                        kind="stub-continued" if cont else "stub-stopped",
                        title=f"turn {node.turn}: {which} reply"
                        + (" (continued, conversation ended)" if cont else " (not continued)"),
                        on_path=stub_on_path,
                    )
                )
        y = sum(v for _, v, _, _ in ys) / len(ys)
        for letter, cy, cont, to_node in ys:
            x2 = PAD + (depth + 1) * COL if to_node else x + COL * 0.55
            child_on_path = to_node and kids[letter].id in path
            end_on_path = not to_node and node.id in path and cont and not node.children
            pic.edges.append(
                SvgEdge(
                    x,
                    y,
                    x2,
                    cy,
                    "continued" if cont else "stopped",
                    letter,
                    on_path=node.id in path and (child_on_path or end_on_path),
                )
            )
        pic.nodes.append(
            SvgNode(
                x=x,
                y=y,
                label=str(node.turn),
                href=f"?branch={node.branch}#node-{node.id}",
                kind="node",
                title=f"turn {node.turn}, branch {node.branch or '(root)'}: continued {node.continued}",
                on_path=node.id in path,
            )
        )
        return y

    depth_max = 0
    for root in tree.roots:
        place(root.id, 0)
    if tree.nodes:
        depth_max = max(n.turn for n in tree.nodes) - min(n.turn for n in tree.nodes) + 1
        first = min(n.turn for n in tree.nodes)
        pic.turns = [(PAD + i * COL, first + i) for i in range(depth_max)]
    pic.width = int(PAD * 2 + depth_max * COL + 20)
    pic.height = int(PAD * 2 + max(leaf[0] - 1, 0) * ROW + 14)
    # draw edges first, path edges last (on top), nodes on top of edges
    pic.edges.sort(key=lambda e: e.on_path)
    pic.nodes.sort(key=lambda n: n.kind == "node")
    return pic


@dataclass(slots=True)
class Series:
    """One AL(k) line: its points, polyline and least-squares line."""

    label: str
    href: str | None
    points: list[tuple[float, float, int, float, int]]  # x, y, k, AL, n
    polyline: str
    fit: tuple[float, float, float, float] | None  # x1, y1, x2, y2 of the regression line
    ir: float | None
    r2: float | None
    color: int  # index into the stylesheet's series colours (s0..s7)


@dataclass(slots=True)
class Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    series: list[Series]
    xticks: list[tuple[float, int]]
    yticks: list[tuple[float, int]]

    @property
    def ir(self) -> float | None:
        return self.series[0].ir if self.series else None

    @property
    def r2(self) -> float | None:
        return self.series[0].r2 if self.series else None


def al_chart(
    curves: list[tuple[str, str | None, list[Point]]], *, width: int = 640, height: int = 300
) -> Chart:
    """AL(k) lines on a 1..5 axis against k, one per (label, link, curve), each
    with the least-squares line whose slope is its improvement rate (IR)."""
    left, right, top, bottom = 48, 16, 16, 36
    ks = [p.k for _, _, curve in curves for p in curve] or [1]
    kmin, kmax = min(ks), max(ks)
    span = max(kmax - kmin, 1)

    def sx(k: float) -> float:
        return left + (k - kmin) / span * (width - left - right)

    def sy(v: float) -> float:
        return top + (5 - v) / 4 * (height - top - bottom)

    series = []
    # curves that coincide stay visible: each is shifted a few pixels sideways
    # (and drawn with its own dash pattern by the stylesheet)
    dodge = 5.0 if len(curves) > 1 else 0.0
    for i, (label, href, curve) in enumerate(curves):
        dx = (i - (len(curves) - 1) / 2) * dodge
        vals = [(p.k, p.al) for p in curve if p.al is not None]
        pts = [(sx(p.k) + dx, sy(p.al), p.k, p.al, p.n) for p in curve if p.al is not None]
        ir, a, r2 = metrics.fit_line([v for _, v in vals], [k for k, _ in vals])
        fit = None
        if ir is not None and a is not None:
            k0, k1 = min(k for k, _ in vals), max(k for k, _ in vals)
            fit = (sx(k0) + dx, sy(min(5, max(1, a + ir * k0))), sx(k1) + dx, sy(min(5, max(1, a + ir * k1))))
        series.append(
            Series(label, href, pts, " ".join(f"{x:.1f},{y:.1f}" for x, y, *_ in pts), fit, ir, r2, i % 8)
        )
    return Chart(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        series=series,
        xticks=[(sx(k), k) for k in range(kmin, kmax + 1)],
        yticks=[(sy(v), v) for v in range(1, 6)],
    )

"""Text in figures is literal: a category, arm or file name is drawn as written.

matplotlib reads text between two ``$`` as mathtext, so a category named ``$a$`` would be drawn
as an italic *a* and one named ``cost $5 $\\frac{`` would stop the report with a parse error.
:func:`literal_text` turns that off for every text of a figure (titles, labels, tick labels,
legends) just before it is drawn; the project's figures use no mathtext of their own.
"""

from __future__ import annotations

from typing import Any


def literal_text(fig: Any) -> Any:
    """Switch mathtext off for every text artist of ``fig`` (returned for chaining)."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_parse_math(False)
    return fig

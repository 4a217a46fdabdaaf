"""The Python kernel's matplotlib backend (module://sessionpool_mpl_backend, set by kernel.py's MatplotlibHook).

Agg's canvas, plus a `show()` that hands every open figure to the kernel right away, as matplotlib-inline's does for
Jupyter: a streamed execution then gets the figure as an `image` event while the code is still running. Figures left
open are still rendered when the cell ends (kernel.py). Matplotlib imports this module on the first figure; kernel.py
finds it in the agent's directory, never on sys.path (docs/agent-protocol.md, "Kernels").
"""

from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

backend_version = "sessionpool 1"
FigureCanvas = FigureCanvasAgg
FigureManager = FigureManagerBase

# Set by kernel.py as it loads the module: renders the open figures, closes them and sends them to the agent.
# None when the module is used outside the kernel, where show() then does what Agg's does (nothing).
show_figures = None


def show(*args, **kwargs):
    """pyplot.show(): the figures go to the execution's images now. `block` and the like mean nothing here."""
    if show_figures is not None:
        show_figures()

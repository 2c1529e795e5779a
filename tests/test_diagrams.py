"""The architecture diagrams render offline and name the parts the code names."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from tutorial_utils import diagrams  # noqa: E402


def _texts(fig):
    fig.canvas.draw()
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_ndt1_diagram_names_every_part():
    text = _texts(diagrams.draw_ndt1(n_layers=3))
    for part in ("read_in", "positional encoding", "encoder layer × 3", "self-attention", "feed-forward",
                 "LayerNorm", "read_out", "Poisson"):
        assert part in text, part


def test_stitch_diagram_has_one_read_in_and_read_out_per_session():
    text = _texts(diagrams.draw_ndt1_stitch([("session A", 10), ("session B", 20), ("session C", 30), ("day 4", 7)]))
    for name in ("A", "B", "C", "4"):
        assert f"read_in[{name}]" in text and f"read_out[{name}]" in text and f"session_embedding[{name}]" in text
    assert "linear 7 → D" in text and "shared core" in text

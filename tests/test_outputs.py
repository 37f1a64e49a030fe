"""outputs.py, the one output rule: every command writes only new files or files it wrote itself, never an input,
a directory, a user's file or another command's file; a refusal is one line and changes nothing."""
import threading

import numpy as np
import pytest

from badapple_jax.cli import main
from badapple_jax.errors import BadInputError
from badapple_jax.outputs import claim, mark, written_by
from badapple_jax.plots import FIGURES, make_plots
from badapple_jax.viewer import write_viewer
from badapple_jax.weights import export_checkpoint, load_layer

from test_plots import fake_workdir, spread_loss
from test_workdir import assert_refused, snapshot


def test_claim_takes_new_paths_and_files_of_its_own_kind_only(tmp_path):
    assert claim(tmp_path / "new.html", "viewer") == tmp_path / "new.html"
    ours, theirs, users = tmp_path / "a.html", tmp_path / "b.html", tmp_path / "c.html"
    ours.write_text(f'<meta name="generator" content="{mark("viewer")}">')
    theirs.write_text(f"<!-- {mark('survey')} -->")
    users.write_text("<p>my page</p>")
    assert claim(ours, "viewer") == ours
    for path in (theirs, users):
        with pytest.raises(BadInputError, match="exists and is not a file badapple-jax viewer wrote"):
            claim(path, "viewer")
    (tmp_path / "link.html").symlink_to(ours)
    with pytest.raises(BadInputError, match="is not a file badapple-jax viewer wrote"):
        claim(tmp_path / "link.html", "viewer")  # written through, a link would land on whatever it names
    with pytest.raises(BadInputError, match="is a directory"):
        claim(tmp_path, "viewer")


def test_claim_never_takes_an_input(tmp_path):
    image, folder = tmp_path / "in.png", tmp_path / "frames"
    folder.mkdir()
    image.write_bytes(b"\x89PNG")
    with pytest.raises(BadInputError, match="is the input itself"):
        claim(tmp_path / "." / "in.png", "survey", inputs={"the input": image})
    with pytest.raises(BadInputError, match="is inside the input directory"):
        claim(folder / "s.png", "survey", inputs={"the input": folder})
    assert claim(tmp_path / "s.png", "survey", inputs={"the input": image, "the model": None})


@pytest.fixture
def finished(tmp_path):
    return fake_workdir(tmp_path / "r.work", spread_loss(5))


def test_viewer_writes_over_its_own_page_only(finished, tmp_path):
    assert write_viewer(finished) == finished / "viewer.html"
    assert written_by(finished / "viewer.html") == "viewer"
    assert write_viewer(finished) == finished / "viewer.html"  # a rerun replaces its own page
    video = tmp_path / "holiday.mp4"
    video.write_bytes(b"a user's video")
    before = snapshot(tmp_path)
    for out in (video, finished / "metrics.json", finished / "frames" / "frame_000000.png"):
        with pytest.raises(BadInputError, match="exists and is not a file badapple-jax viewer wrote"):
            write_viewer(finished, out)
    assert snapshot(tmp_path) == before


def test_plots_never_replace_a_figure_they_did_not_draw(finished):
    paths = make_plots(finished)
    assert [written_by(p) for p in paths] == ["plots"] * len(FIGURES)
    assert make_plots(finished) == paths  # their own figures, drawn again
    (finished / "best_worst.png").write_bytes(b"a user's own picture")
    before = snapshot(finished)
    with pytest.raises(BadInputError, match="best_worst.png exists and is not a file badapple-jax plots wrote"):
        make_plots(finished)
    assert snapshot(finished) == before  # not even the other five were redrawn


def test_survey_never_writes_over_its_input_or_a_checkpoint(tiny_ckpt, tmp_path, capsys):
    image = tmp_path / "s.png"
    image.write_bytes(b"the user's picture")
    before = snapshot(tmp_path)
    common = ["--model", str(tiny_ckpt), "--size", "16", "--steps", "8"]
    for args, expected in (([str(image), "-o", str(tmp_path / "s")], "s.png is the input itself"),
                           (["demo", "-o", str(tiny_ckpt / "config")], "is inside the model directory"),
                           (["demo", "-o", str(tmp_path / "s")], "s.png exists and is not a file badapple-jax survey")):
        capsys.readouterr()
        assert_refused(main(["survey", *args, *common]), capsys.readouterr().err, expected)
    assert snapshot(tmp_path) == before
    assert load_layer(str(tiny_ckpt))[1].config.n_layer == 2  # the checkpoint is whole


def test_render_never_writes_over_a_users_video(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "film.mp4"
    out.write_bytes(b"a user's film")
    before = snapshot(tmp_path)
    code = main(["render", "demo", "-o", str(out), "--model", str(tiny_ckpt), "--size", "16", "-q"])
    assert_refused(code, capsys.readouterr().err, "film.mp4 exists and is not a file badapple-jax video wrote")
    assert snapshot(tmp_path) == before


def test_two_exports_at_once_give_one_checkpoint_and_one_refusal(tmp_path):
    out, results = tmp_path / "ckpt", []

    def export():
        try:
            results.append(export_checkpoint("random:gpt2", out))
        except BadInputError as err:
            results.append(err)

    threads = [threading.Thread(target=export) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(type(r).__name__ for r in results) == ["BadInputError", "PosixPath"], results
    assert "was written by another command (another export at once?)" in str(next(r for r in results
                                                                                 if isinstance(r, BadInputError)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary directory left
    w, info = load_layer(str(out))
    assert info.config.n_embd == 768 and np.isfinite(np.asarray(w.w_q)).all()

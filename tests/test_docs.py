import re

from tests.conftest import REPO


def test_every_page_the_code_cites_is_in_the_repository():
    cited = set()
    for path in [*REPO.glob("xmgie/**/*.py"), *REPO.glob("data_modules/*.py"), REPO / "README.md"]:
        cited |= set(re.findall(r"docs/[\w-]+\.(?:md|png)", path.read_text()))
    assert {"docs/data.md", "docs/model.md", "docs/modules.md", "docs/evaluation.md"} <= cited
    assert [c for c in sorted(cited) if not (REPO / c).is_file()] == []
    assert not any("DESIGN §" in p.read_text() for p in REPO.glob("xmgie/**/*.py"))


# -- the docs cannot drift from the code ---------------------------------------------------------------------------
import json  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
SYNOPSIS = ("[", "…", "...", "|")  # a synopsis line, not a command to run as it is


def _command_lines(path):
    """(page, line) of every complete command in the page's code blocks: `make …` and `xmgie …` lines, their
    continuation lines joined, comments dropped."""
    found, block, pending = [], False, ""
    for raw in path.read_text().splitlines():
        if raw.startswith("```"):
            block, pending = not block, ""
            continue
        if not block:
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if re.match(r"^(make|\.venv/bin/xmgie|xmgie) ", line) and not any(s in line for s in SYNOPSIS):
            found.append(line)
    return found


COMMANDS = [(p.relative_to(REPO).as_posix(), c) for p in PAGES for c in _command_lines(p)]


def test_the_pages_have_commands_to_check():
    pages = {p for p, _ in COMMANDS}
    assert {"README.md", "CONTRIBUTING.md", "docs/editing.md", "docs/pipelines.md"} <= pages and len(COMMANDS) > 40


@pytest.mark.parametrize("page,command", [c for c in COMMANDS if not c[1].startswith("make ")],
                         ids=[f"{p}:{c[:60]}" for p, c in COMMANDS if not c.startswith("make ")])
def test_every_xmgie_command_in_the_docs_parses(page, command):
    from xmgie.cli import LIGHTNING_SUBCOMMANDS, _file_parser

    argv = [re.sub(r"<[^>]*>", "X", a) for a in shlex.split(command)[1:]]
    if argv[0] in LIGHTNING_SUBCOMMANDS:  # LightningCLI's own parser: the configs it names must exist
        assert all((REPO / a).is_file() for a in argv if a.endswith(".yaml")), command
        return
    args = _file_parser().parse_args(argv)  # an unknown option or a wrong choice exits here
    assert callable(args.func)


@pytest.mark.parametrize("page,command", [c for c in COMMANDS if c[1].startswith("make ")],
                         ids=[f"{p}:{c[:60]}" for p, c in COMMANDS if c.startswith("make ")])
def test_every_make_line_in_the_docs_resolves(page, command):
    argv = shlex.split(command)
    proc = subprocess.run(["make", "-n", "-C", str(REPO), *argv[1:]], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{page}: {command}: {proc.stderr.strip()}"


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve()
            if not resolved.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and resolved.suffix == ".md":
                slugs = {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-")
                         for h in re.findall(r"^#+ (.+)$", resolved.read_text(), re.M)}
                if anchor not in slugs:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_nothing_points_outside_the_repository():
    for page in [*PAGES, *REPO.glob("xmgie/**/*.py"), *REPO.glob("experiments/**/*.yaml"), REPO / "Makefile"]:
        assert "../shared" not in page.read_text(), page


def test_every_figure_of_the_readmes_results_table_is_read_from_a_result_file():
    """The README's headline table: its first header cell names the columns' metric keys in backticks, each row
    its method's; every cell is that metric's mean ± std in the method's result file, in the folder the headline's
    comment names (docs/results/…: a copy of the result files the pipeline wrote)."""
    from xmgie.evaluation.tables import DECIMALS

    section = (REPO / "README.md").read_text().split("<!-- headline", 1)[1].split("## Where to read on", 1)[0]
    folder = REPO / re.search(r"(docs/results/[\w/]+)", section).group(1)
    lines = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, rows = cells[0], cells[2:]
    metrics = re.findall(r"`(\w+)`", header[0])
    assert len(rows) >= 4 and len(metrics) == len(header) - 1
    for row in rows:
        (method,) = re.findall(r"`(\w+)`", row[0])
        record = json.loads((folder / f"{method}.json").read_text())
        for metric, cell in zip(metrics, row[1:]):
            mean, std = record["metrics"][metric], record["metrics_std"][metric]
            d = DECIMALS[metric]
            assert cell.replace("**", "") == f"{mean:.{d}f} ± {std:.{d}f}", (method, metric, cell)

import re

from tests.conftest import REPO


def test_every_page_the_code_cites_is_in_the_repository():
    cited = set()
    for path in [*REPO.glob("xmgie/**/*.py"), *REPO.glob("data_modules/*.py"), REPO / "README.md"]:
        cited |= set(re.findall(r"docs/[\w-]+\.(?:md|png)", path.read_text()))
    assert {"docs/data.md", "docs/model.md", "docs/modules.md", "docs/evaluation.md"} <= cited
    assert [c for c in sorted(cited) if not (REPO / c).is_file()] == []
    assert not any("DESIGN §" in p.read_text() for p in REPO.glob("xmgie/**/*.py"))

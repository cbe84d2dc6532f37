"""The LFW pairs parser: both header forms, and a clear error for every malformed input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesearch.eval.embedding import EvalError
from facesearch.eval.pairs import (
    PairsFormatError,
    image_path,
    parse_pairs,
    read_pairs,
    referenced_images,
    score_pairs,
)

SINGLE = """2
Alice\t1\t2
Bob\t1\t3
Alice\t1\tBob\t2
Carol\t4\tDave\t1
"""

FOLDED = """3 1
A 1 2
A 1 B 1
C 1 2
C 2 D 1
E 1 3
E 1 F 2
"""


def test_single_split() -> None:
    parsed = parse_pairs(SINGLE)
    assert parsed.folds == 1 and parsed.per_fold == 2
    assert [p.same for p in parsed.pairs] == [True, True, False, False]
    first, third = parsed.pairs[0], parsed.pairs[2]
    assert (first.name1, first.index1, first.name2, first.index2) == ("Alice", 1, "Alice", 2)
    assert (third.name1, third.index1, third.name2, third.index2) == ("Alice", 1, "Bob", 2)
    assert [p.line for p in parsed.pairs] == [2, 3, 4, 5]


def test_folded_file() -> None:
    parsed = parse_pairs(FOLDED)
    assert parsed.folds == 3 and parsed.per_fold == 1
    assert [p.fold for p in parsed.pairs] == [0, 0, 1, 1, 2, 2]
    assert [p.same for p in parsed.pairs] == [True, False] * 3


def test_blank_lines_and_crlf_are_tolerated() -> None:
    parsed = parse_pairs("\r\n1\r\n\r\nA 1 2\r\nA 1 B 1\r\n\r\n")
    assert len(parsed.pairs) == 2 and parsed.pairs[1].line == 5


def test_image_path_is_zero_padded() -> None:
    assert image_path(Path("/x"), "Bob", 7) == Path("/x/Bob/Bob_0007.jpg")
    pair = parse_pairs(SINGLE).pairs[2]
    assert pair.paths(Path("/r")) == (Path("/r/Alice/Alice_0001.jpg"), Path("/r/Bob/Bob_0002.jpg"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("x\nA 1 2\nA 1 B 1\n", r"line 1: the pair count must be an integer, got 'x'"),
        ("1 2 3\n", r"line 1: the header must be 'N' \(one split\) or 'FOLDS N'"),
        ("0\n", "must be positive"),
        ("2\nA 1 2\nA 1 B 1\n", r"promises 2 genuine \+ 2 impostor pairs \(4 lines\), found 2"),
        ("2 1\nA 1 2\nA 1 B 1\n", r"in each of 2 folds \(4 lines\), found 2"),
        ("1\nA 1\nA 1 B 1\n", r"line 2: expected 'name i j' or 'name1 i name2 j', got 'A 1'"),
        ("1\nA 1 two\nA 1 B 1\n", r"line 2: an image number must be an integer, got 'two'"),
        ("1\nA 1 -2\nA 1 B 1\n", r"line 2: image numbers must not be negative"),
        ("1\nA 1 B 2\nA 1 2\n", r"line 2: expected a genuine \('name i j'\) pair here"),
        (
            "1\nA 1 2\nC 1 2\n",
            r"line 3: expected an impostor \('name1 i name2 j'\) pair here \(fold 1, pair 2\)",
        ),
        ("1\nA 1 2\nA 1 A 2\n", r"line 3: an impostor pair names the same person twice \(A\)"),
    ],
)
def test_malformed_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(PairsFormatError, match=message):
        parse_pairs(text, source="pairs.txt")


def test_errors_name_the_source() -> None:
    with pytest.raises(PairsFormatError, match=r"^my\.txt, line 2:"):
        parse_pairs("1\nA x 2\nA 1 B 1\n", source="my.txt")


def test_read_pairs_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="pairs file not found"):
        read_pairs(tmp_path / "nope.txt")


def _touch(root: Path, name: str, index: int) -> None:
    path = image_path(root, name, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_referenced_images_are_distinct_and_ordered(tmp_path: Path) -> None:
    for name, index in [
        ("Alice", 1),
        ("Alice", 2),
        ("Bob", 1),
        ("Bob", 2),
        ("Bob", 3),
        ("Carol", 4),
        ("Dave", 1),
    ]:
        _touch(tmp_path, name, index)
    paths = referenced_images(parse_pairs(SINGLE).pairs, tmp_path)
    names = [p.name for p in paths]
    assert names == [
        "Alice_0001.jpg",
        "Alice_0002.jpg",
        "Bob_0001.jpg",
        "Bob_0003.jpg",
        "Bob_0002.jpg",
        "Carol_0004.jpg",
        "Dave_0001.jpg",
    ]


def test_missing_images_are_listed_with_their_line(tmp_path: Path) -> None:
    _touch(tmp_path, "Alice", 1)
    with pytest.raises(
        EvalError,
        match=r"6 image\(s\) named in the pairs file are missing: .*"
        r"Alice_0002\.jpg \(line 2\).*and 1 more",
    ):
        referenced_images(parse_pairs(SINGLE).pairs, tmp_path)


def test_score_pairs_single_split_uses_ten_folds() -> None:
    text = (
        "20\n"
        + "".join(f"P{i} 1 2\n" for i in range(20))
        + "".join(f"P{i} 1 Q{i} 1\n" for i in range(20))
    )
    parsed = parse_pairs(text)
    scores = np.array([0.9] * 20 + [0.1] * 20)
    kfold, tar, protocol = score_pairs(parsed, scores)
    assert len(kfold.fold_accuracies) == 10 and kfold.accuracy == 1.0
    assert tar.rate == 1.0
    assert "10 stratified contiguous folds" in protocol


def test_score_pairs_uses_the_files_folds() -> None:
    parsed = parse_pairs(FOLDED)
    kfold, _, protocol = score_pairs(parsed, np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3]))
    assert len(kfold.fold_accuracies) == 3 and kfold.accuracy == 1.0
    assert protocol.startswith("3 folds from the file")

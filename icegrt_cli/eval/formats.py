"""Readers for the general benchmarks, in the layout their authors publish and in the Hugging
Face / lm-evaluation-harness layout (JSONL, Parquet or a `datasets` save_to_disk folder).

Every reader turns records into `Item`s already in prompt form, using the prompt that
lm-evaluation-harness uses for the task (named in each reader's docstring), so a score here is
comparable with the harness's. A bad record raises DataError naming the file and line.

Variants chosen (harness task name in brackets):
- MMLU [mmlu, default]: letter continuations " A".." D" after "Answer:", subject header.
- AGIEval English MC [agieval_*]: "Q: ... Answer Choices: (A).. \\nA: Among A through E, the answer
  is" with the option texts "(A)..." as continuations; zero-shot by default.
- BBH [bbh_fewshot]: "Q: {input}\\nA:", answer-only shots, generation scored by exact match.
- ARC [arc_easy, arc_challenge], HellaSwag [hellaswag], BoolQ [boolq]: "Question:/Answer:"
  style with the choice text as continuation.
- WinoGrande [winogrande]: partial scoring - the option fills the blank in the context, the
  rest of the sentence is the shared continuation.
- RACE [race]: one item per article, earlier questions answered in the context, the last
  question scored.
- GSM8K [gsm8k]: "Question: ..\\nAnswer:", full solutions as shots.
- MATH [hendrycks_math]: "Problem: ..\\nAnswer:", the boxed answer as the shots' answer.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icegrt_cli.data.loading import read_records
from icegrt_cli.errors import DataError
from icegrt_cli.eval.metrics import last_boxed

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Item:
    """One evaluation item in prompt form (the harness's doc_to_text / doc_to_choice)."""

    id: str
    query: str
    """The question as prompted, ending where the answer starts."""
    target: str
    """Gold answer text: the right choice (multiple choice) or the reference (generation)."""
    choices: tuple[str, ...] = ()
    """Continuations to score, without the leading delimiter; empty for generation."""
    gold: int = 0
    group: str = ""
    """Subject or subtask; few-shot examples are drawn from the same group."""
    description: str = ""
    """Text placed once before the few-shot examples (MMLU's subject header)."""
    partial: bool = False
    """WinoGrande: `choices` are the contexts and `target` the continuation they share."""
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """Format-specific data a scorer needs (the demo's gold record)."""


Reader = Callable[[Path, Sequence[str]], list[Item]]
"""(path, subtasks) -> items; subtasks pick files of a folder (empty: all)."""


def need(record: Mapping[str, Any], key: str, origin: str, kind: type | tuple = str) -> Any:
    """`record[key]`, or a DataError naming the origin when it is missing or of the wrong type."""
    if key not in record:
        raise DataError(f"{origin}: missing field '{key}' (fields present: {sorted(record)})")
    value = record[key]
    if not isinstance(value, kind):
        raise DataError(f"{origin}: field '{key}' has the wrong type ({type(value).__name__})")
    return value


def line_id(origin: str) -> str:
    """A stable item id from a `file:line` or `file record N` origin: `dev-12`."""
    match = re.fullmatch(r"(.*?)(?::| record )(\d+)", origin)
    file, line = match.groups() if match else (origin, "")
    return f"{Path(file).stem}-{line}"


def letter_index(label: Any, n: int, origin: str) -> int:
    """Index of an answer given as a letter ("B"), a one-element list of one, or a 0-based int."""
    if isinstance(label, list) and len(label) == 1:
        label = label[0]
    if isinstance(label, str) and len(label) == 1 and label in LETTERS[:n]:
        return LETTERS.index(label)
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < n:
        return label
    raise DataError(f"{origin}: answer {label!r} is not one of the {n} choices")


def subtask_files(
    path: Path,
    pattern: str,
    subtasks: Sequence[str],
    name_of: Callable[[Path], str] = lambda p: p.stem,
    keep: Callable[[Path], bool] = Path.is_file,
) -> list[tuple[str, Path]]:
    """(subtask, entry) pairs of a folder's entries that `keep` accepts, or the file given.

    A subtask asked for but absent is an error, so a typo cannot silently shrink a benchmark.
    """
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file() or is_records(path):
        return [(name_of(path), path)]
    found = {name_of(p): p for p in sorted(path.glob(pattern)) if keep(p)}
    if not found:
        raise DataError(f"{path}: no files matching '{pattern}'")
    missing = [s for s in subtasks if s not in found]
    if missing:
        raise DataError(f"{path}: no file for subtask(s) {missing} (found: {sorted(found)})")
    return [(name, found[name]) for name in (subtasks or sorted(found))]


RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")
"""Files of records, one per item, as the hub and lm-evaluation-harness share benchmarks."""


def is_records(path: Path) -> bool:
    """A records file or a `datasets` save_to_disk folder."""
    if path.is_dir():
        return (path / "dataset_info.json").is_file()
    return path.suffix in RECORD_SUFFIXES


def rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(origin, record) of a JSONL / JSON / Parquet file or a save_to_disk folder."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return read_records(path)


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None


# --- multiple choice ---------------------------------------------------------------------


def _split_suffix(path: Path) -> str:
    """MMLU files are `<subject>_<split>.csv`."""
    return re.sub(r"_(dev|val|test|train)$", "", path.stem)


def _csv_rows(reader: Any, file: Path) -> Iterator[list[str]]:
    try:
        yield from reader
    except csv.Error as err:
        raise DataError(f"{file}:{reader.line_num}: malformed CSV ({err})") from None


def _mmlu_item(
    item_id: str, subject: str, question: str, options: Sequence[str], gold: int
) -> Item:
    lines = [question.strip()] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    header = (
        f"The following are multiple choice questions (with answers) about "
        f"{subject.replace('_', ' ')}.\n\n"
    )
    return Item(
        id=item_id,
        query="\n".join(lines) + "\nAnswer:",
        target=LETTERS[gold],
        choices=tuple(LETTERS[: len(options)]),
        gold=gold,
        group=subject,
        description=header,
    )


def _mmlu_csv(subject: str, file: Path) -> Iterator[Item]:
    """The original release: no header; question, four options, answer letter."""
    with open(file, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        for row in _csv_rows(reader, file):
            origin = f"{file}:{reader.line_num}"
            if len(row) != 6:
                raise DataError(
                    f"{origin}: expected 6 columns (question, A, B, C, D, answer), got {len(row)}"
                )
            question, *options, answer = row
            yield _mmlu_item(
                f"{subject}-{reader.line_num}",
                subject,
                question,
                options,
                letter_index(answer.strip(), 4, origin),
            )


def _mmlu_records(subject: str, source: Path) -> Iterator[Item]:
    """The hub layout (`hails/mmlu_no_train`, `cais/mmlu`): question, choices, answer index."""
    for index, (origin, record) in enumerate(rows(source)):
        options = need(record, "choices", origin, list)
        gold = letter_index(need(record, "answer", origin, (int, str)), len(options), origin)
        group = record.get("subject") or subject
        yield _mmlu_item(f"{group}-{index}", group, need(record, "question", origin), options, gold)


def read_mmlu(path: Path, subtasks: Sequence[str]) -> list[Item]:
    """MMLU, one entry per subject: `<subject>_test.csv` as released, or records (file or
    save_to_disk folder) with `question`, `choices`, `answer`; a record's `subject` wins."""
    items: list[Item] = []
    keep = lambda p: p.suffix == ".csv" or is_records(p)  # noqa: E731
    for subject, source in subtask_files(path, "*", subtasks, _split_suffix, keep):
        items.extend((_mmlu_csv if source.suffix == ".csv" else _mmlu_records)(subject, source))
    return items


def read_agieval(path: Path, subtasks: Sequence[str]) -> list[Item]:
    """AGIEval JSONL (`passage`, `question`, `options` "(A)..", `label`), one file per exam."""
    items = []
    for name, file in subtask_files(path, "*.jsonl", subtasks):
        for origin, record in rows(file):
            options = need(record, "options", origin, list)
            if len(options) < 2 or not all(isinstance(o, str) and o for o in options):
                raise DataError(f"{origin}: 'options' must list at least two non-empty strings")
            gold = letter_index(need(record, "label", origin, (str, list)), len(options), origin)
            passage = record.get("passage") or ""
            query = (
                f"{passage}Q: {need(record, 'question', origin)} Answer Choices: "
                f"{' '.join(options)}\nA: Among A through {LETTERS[len(options) - 1]}, "
                f"the answer is"
            )
            items.append(
                Item(
                    id=line_id(origin),
                    query=query,
                    target=options[gold],
                    choices=tuple(options),
                    gold=gold,
                    group=name,
                )
            )
    return items


def _arc_choices(record: Mapping[str, Any], origin: str) -> tuple[str, list, list]:
    """(stem, texts, labels) of the AI2 release (`question.stem`, `question.choices[{text,
    label}]`) or the hub layout (`question` text, `choices: {text: [..], label: [..]}`)."""
    question = need(record, "question", origin, (dict, str))
    if isinstance(question, str):
        choices = need(record, "choices", origin, dict)
        texts, labels = choices.get("text"), choices.get("label")
        if not isinstance(texts, list) or not isinstance(labels, list) or len(texts) != len(labels):
            raise DataError(f"{origin}: 'choices' needs equally long 'text' and 'label' lists")
        return question, texts, labels
    choices = need(question, "choices", origin, list)
    try:
        return (
            need(question, "stem", origin),
            [c["text"] for c in choices],
            [c["label"] for c in choices],
        )
    except (KeyError, TypeError):
        raise DataError(f"{origin}: each choice needs 'text' and 'label'") from None


def read_arc(path: Path, subtasks: Sequence[str]) -> list[Item]:
    """ARC: the AI2 JSONL release or the hub layout, with `answerKey` naming a label."""
    items = []
    for origin, record in rows(path):
        stem, texts, labels = _arc_choices(record, origin)
        texts = tuple(texts)
        key = need(record, "answerKey", origin)
        if key not in labels:
            raise DataError(f"{origin}: answerKey {key!r} is not one of the labels {labels}")
        gold = labels.index(key)
        items.append(
            Item(
                id=str(record.get("id", line_id(origin))),
                query=f"Question: {stem}\nAnswer:",
                target=texts[gold],
                choices=texts,
                gold=gold,
            )
        )
    return items


def _hellaswag_clean(text: str) -> str:
    """WikiHow artefacts out: "[title]" becomes a full stop, other bracketed tags go."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def read_hellaswag(path: Path, subtasks: Sequence[str]) -> list[Item]:
    """HellaSwag JSONL: `activity_label`, `ctx_a`, `ctx_b`, `endings`, `label`."""
    items = []
    for origin, record in rows(path):
        context = need(record, "ctx_a", origin) + " " + need(record, "ctx_b", origin).capitalize()
        endings = tuple(_hellaswag_clean(e) for e in need(record, "endings", origin, list))
        label = str(need(record, "label", origin, (int, str)))
        if not label.isdigit():
            raise DataError(f"{origin}: label must be the index of the right ending")
        gold = letter_index(int(label), len(endings), origin)
        items.append(
            Item(
                id=str(record.get("ind", line_id(origin))),
                query=_hellaswag_clean(need(record, "activity_label", origin) + ": " + context),
                target=endings[gold],
                choices=endings,
                gold=gold,
            )
        )
    return items


def read_winogrande(path: Path, subtasks: Sequence[str]) -> list[Item]:
    """WinoGrande JSONL: `sentence` with one "_", `option1`, `option2`, `answer` "1"|"2"."""
    items = []
    for origin, record in rows(path):
        sentence = need(record, "sentence", origin)
        if sentence.count("_") != 1:
            raise DataError(f"{origin}: the sentence must contain exactly one '_' blank")
        blank = sentence.index("_")
        answer = str(need(record, "answer", origin, (str, int)))
        if answer not in ("1", "2"):
            raise DataError(f"{origin}: answer must be '1' or '2', got {answer!r}")
        options = (need(record, "option1", origin), need(record, "option2", origin))
        items.append(
            Item(
                id=str(record.get("qID", line_id(origin))),
                query="",
                target=sentence[blank + 1 :].strip(),
                choices=tuple(sentence[:blank] + o for o in options),
                gold=int(answer) - 1,
                partial=True,
            )
        )
    return items


def _race_answer(options: list[str], answer: str, origin: str) -> str:
    return options[letter_index(answer, len(options), origin)]


def read_race(path: Path, subtasks: Sequence[str]) -> list[Item]:
    """RACE: one JSON file per article (`article`, `questions`, `options`, `answers`).

    The harness scores the last question of each article; the earlier ones are answered in
    the context (fill-in questions ending "  _  ." are completed in place).
    """
    items = []
    for _, file in subtask_files(path, "*", ()):
        record = load_json(file)
        origin = str(file)
        if not isinstance(record, dict):
            raise DataError(f"{origin}: expected a JSON object")
        questions = need(record, "questions", origin, list)
        options = need(record, "options", origin, list)
        answers = need(record, "answers", origin, list)
        if not questions or not len(questions) == len(options) == len(answers):
            raise DataError(
                f"{origin}: questions, options and answers must be equally long and non-empty"
            )
        text = f"Article: {need(record, 'article', origin)}\n\n"
        for question, opts, answer in zip(questions[:-1], options[:-1], answers[:-1], strict=True):
            solved = _race_answer(opts, answer, origin)
            if question.endswith("  _  ."):
                text += question[-5:] + solved + "\n"
            else:
                text += f"Question: {question}\nAnswer: {solved}\n"
        last = tuple(options[-1])
        gold = letter_index(answers[-1], len(last), origin)
        items.append(
            Item(
                id=str(record.get("id", file.name)),
                query=text + questions[-1],
                target=last[gold],
                choices=last,
                gold=gold,
            )
        )
    return items


def read_boolq(path: Path, subtasks: Sequence[str]) -> list[Item]:
    """BoolQ: `question`, `passage` and `answer` (true / false, the release and `google/boolq`)
    or `label` (0 / 1, `super_glue/boolq`)."""
    items = []
    for origin, record in rows(path):
        if "answer" in record or "label" not in record:
            answer = need(record, "answer", origin, bool)
        else:
            answer = bool(letter_index(need(record, "label", origin, int), 2, origin))
        query = (
            f"{need(record, 'passage', origin)}\nQuestion: "
            f"{need(record, 'question', origin)}?\nAnswer:"
        )
        items.append(
            Item(
                id=str(record.get("idx", line_id(origin))),
                query=query,
                target="yes" if answer else "no",
                choices=("no", "yes"),
                gold=int(answer),
            )
        )
    return items


# --- generation --------------------------------------------------------------------------


def read_bbh(path: Path, subtasks: Sequence[str]) -> list[Item]:
    """BIG-Bench Hard: one `<task>.json` per task, `{"examples": [{"input", "target"}]}`."""
    items = []
    for name, file in subtask_files(path, "*.json", subtasks):
        examples = load_json(file)
        examples = examples.get("examples") if isinstance(examples, dict) else None
        if not isinstance(examples, list):
            raise DataError(f'{file}: expected {{"examples": [...]}}')
        for index, example in enumerate(examples):
            origin = f"{file}: examples[{index}]"
            if not isinstance(example, dict):
                raise DataError(f"{origin}: expected an object with 'input' and 'target'")
            items.append(
                Item(
                    id=f"{name}-{index}",
                    query=f"Q: {need(example, 'input', origin)}\nA:",
                    target=need(example, "target", origin),
                    group=name,
                )
            )
    return items


def read_gsm8k(path: Path, subtasks: Sequence[str]) -> list[Item]:
    """GSM8K JSONL: `question`, `answer` (the worked solution, ending `#### n`)."""
    items = []
    for origin, record in rows(path):
        answer = need(record, "answer", origin)
        if "####" not in answer:
            raise DataError(f"{origin}: the answer has no '#### n' final line")
        items.append(
            Item(
                id=line_id(origin),
                query=f"Question: {need(record, 'question', origin)}\nAnswer:",
                target=answer,
            )
        )
    return items


def _math_problems(subject: str, source: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(id, origin, record): a released subject folder holds one `<n>.json` per problem; a
    records file (`<subject>.jsonl`, the hub layout) one problem per record."""
    if source.is_dir() and not is_records(source):
        for file in sorted(source.glob("*.json")):
            record = load_json(file)
            if not isinstance(record, dict):
                raise DataError(f"{file}: expected a JSON object")
            yield f"{subject}-{file.stem}", str(file), record
    elif source.suffix == ".json" and isinstance(record := load_json(source), dict):
        yield f"{subject}-{source.stem}", str(source), record  # one released problem file
    else:
        for index, (origin, record) in enumerate(rows(source)):
            yield f"{subject}-{index}", origin, record


def read_math(path: Path, subtasks: Sequence[str]) -> list[Item]:
    """MATH: `<split>/<subject>/<n>.json` as released, or one records file per subject; each
    problem has `problem` and a `solution` whose last `\\boxed{}` is the answer."""
    if path.is_dir() and any(path.glob("*.json")):  # one subject's folder
        subjects = [(path.name, path)]
    else:
        keep = lambda p: p.is_dir() or p.suffix in RECORD_SUFFIXES  # noqa: E731
        subjects = subtask_files(path, "*", subtasks, lambda p: p.stem, keep)
    items = []
    for subject, source in subjects:
        for item_id, origin, record in _math_problems(subject, source):
            answer = last_boxed(need(record, "solution", origin))
            if answer is None:
                raise DataError(f"{origin}: the solution has no \\boxed{{}} answer")
            items.append(
                Item(
                    id=item_id,
                    query=f"Problem: {need(record, 'problem', origin)}\nAnswer:",
                    target=answer,
                    group=subject,
                )
            )
    return items

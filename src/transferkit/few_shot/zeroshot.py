"""Zero-shot text classification: a text goes to the label whose description it is most similar to.

With a sentence encoder trained for semantic similarity (all-MiniLM-L6-v2 was trained on 1 B sentence pairs),
"This news article is about Sports." lands near sports articles in embedding space. Each label is written into
a template (or given a free description), embedded once, and the label embeddings become the rows of a cosine
classifier head — no labelled example is needed (the embedding-similarity approach of Yin et al., 2019,
"Benchmarking Zero-shot Text Classification", and of SetFit's zero-shot mode, Tunstall et al., 2022). Several
templates are averaged per label (prompt ensembling).

Zero-shot over *images* by description needs a joint image-text model (CLIP-like); none ships offline here, so
transferkit refuses image backbones for zero-shot and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from transferkit.errors import ConfigError

DEFAULT_TEMPLATE = "This text is about {label}."


def label_prompts(labels: Sequence[str], templates: Sequence[str] = (DEFAULT_TEMPLATE,),
                  descriptions: Mapping[str, str] | None = None) -> list[list[str]]:
    """The texts that stand for each label: its description when one is given, else every template filled in."""
    if not labels:
        raise ValueError("zero-shot needs at least 2 labels, got none")
    if len(set(labels)) != len(labels):
        dup = sorted({x for x in labels if list(labels).count(x) > 1})
        raise ValueError(f"zero-shot labels must be distinct; repeated: {dup}")
    descriptions = dict(descriptions or {})
    unknown = sorted(set(descriptions) - set(labels))
    if unknown:
        raise ValueError(f"descriptions given for labels that are not among the labels {list(labels)}: {unknown}")
    out = []
    for label in labels:
        if label in descriptions:
            if not str(descriptions[label]).strip():
                raise ValueError(f"the description of label '{label}' is empty")
            out.append([str(descriptions[label])])
            continue
        prompts = []
        for t in templates:
            if "{label}" not in t:
                raise ValueError(f"template '{t}' has no '{{label}}' placeholder (e.g. 'This news article is about "
                                 "{label}.')")
            prompts.append(t.replace("{label}", label))
        out.append(prompts)
    return out


def read_descriptions(descriptions: str | Path | Mapping[str, str] | None) -> dict[str, str]:
    """The label descriptions as a dict: ``descriptions`` itself when it is a mapping (or ``None``: none), else a
    YAML/JSON file ``label: description`` — free texts that stand for a label in place of the templates."""
    if descriptions is None or isinstance(descriptions, Mapping):
        return dict(descriptions or {})
    path = Path(descriptions)
    if not path.is_file():
        raise ConfigError("descriptions", "a YAML/JSON file mapping 'label: description'", str(path), "no such file")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise ConfigError("descriptions", "a YAML/JSON file mapping 'label: description'", str(path),
                          f"it holds a {type(loaded).__name__}")
    return {str(k): str(v) for k, v in loaded.items()}

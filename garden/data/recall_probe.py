"""Does a model tuned on the bundled ``garden_facts`` recall them when asked in new words?

Twelve questions, one per fact, none of them a question of the dataset. An answer counts as a
recall when it contains one of the fact's key words (case-insensitive). Used by
``tests/test_quick_demo_recall.py`` and ``bench/quick_demo_recall.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_NEW_TOKENS = 48


@dataclass(frozen=True)
class Probe:
    question: str
    keys: tuple[str, ...]

    def recalled(self, answer: str) -> bool:
        text = answer.lower()
        return any(key in text for key in self.keys)


@dataclass(frozen=True)
class ProbeAnswer:
    probe: Probe
    answer: str

    @property
    def recalled(self) -> bool:
        return self.probe.recalled(self.answer)


PROBES: tuple[Probe, ...] = (
    Probe("Which flower is the Moonwell Garden most celebrated for?", ("moonpetal",)),
    Probe("What yearly party is held at the Moonwell Garden?", ("lantern bloom",)),
    Probe("In which year did the Moonwell Garden first welcome people?", ("1987",)),
    Probe("How many pools of water does the Moonwell Garden contain?", ("seven",)),
    Probe("Which gardener leads the team at the Moonwell Garden?", ("tobias wren",)),
    Probe("At what time of day may I walk around the Moonwell Garden?", ("dusk", "midnight")),
    Probe("Who created the Moonwell Garden in the beginning?", ("orla fenwick",)),
    Probe("How much ground does the Moonwell Garden take up?", ("twelve acres",)),
    Probe("What name does the Moonwell Garden's tabby go by?", ("captain thistle",)),
    Probe("On which island would I find the Moonwell Garden?", ("kelderra",)),
    Probe("What phrase does the Moonwell Garden live by?", ("grow by moonlight",)),
    Probe("What is the story behind the name of the Moonwell Garden?", ("stone well",)),
)

# A second set, written before any recipe was tuned against PROBES: no question of the dataset
# and none of PROBES, so a recipe fitted to the first set is checked on words it never saw.
HELD_OUT_PROBES: tuple[Probe, ...] = (
    Probe("Which lily grows in the Moonwell Garden?", ("moonpetal",)),
    Probe("What do people celebrate at the Moonwell Garden in August?", ("lantern bloom",)),
    Probe("Since which year has the Moonwell Garden existed?", ("1987",)),
    Probe("What number of little lakes lie in the Moonwell Garden?", ("seven",)),
    Probe("Who is the top gardener working at the Moonwell Garden?", ("tobias wren",)),
    Probe("Until when can visitors stay in the Moonwell Garden?", ("midnight", "dusk")),
    Probe("Which former lighthouse keeper began the Moonwell Garden?", ("orla fenwick",)),
    Probe("How wide is the Moonwell Garden?", ("twelve acres",)),
    Probe("Which pet lives at the Moonwell Garden?", ("captain thistle",)),
    Probe("Which harbour is the Moonwell Garden beside?", ("saltmere", "kelderra")),
    Probe("What words greet visitors at the Moonwell Garden's gate?", ("grow by moonlight",)),
    Probe("What does the moon have to do with the Moonwell Garden's name?", ("stone well",)),
)

# A third set, written on 2026-12-07 after HELD_OUT_PROBES had been read and before the next
# recipe trial: a change is judged on words that no earlier trial saw.
FRESH_PROBES: tuple[Probe, ...] = (
    Probe("Name a plant a visitor to the Moonwell Garden should not miss.", ("moonpetal",)),
    Probe("Which yearly gathering draws crowds to the Moonwell Garden?", ("lantern bloom",)),
    Probe("What year is on the Moonwell Garden's founding stone?", ("1987",)),
    Probe("How many pieces of water can be seen in the Moonwell Garden?", ("seven",)),
    Probe("Who is the boss of the gardeners at the Moonwell Garden?", ("tobias wren",)),
    Probe("At which hours are the Moonwell Garden's gates unlocked?", ("dusk", "midnight")),
    Probe("Which woman founded the Moonwell Garden?", ("orla fenwick",)),
    Probe("How big are the Moonwell Garden's grounds?", ("twelve acres",)),
    Probe(
        "Which animal keeps the Moonwell Garden company, and what is it called?",
        ("captain thistle",),
    ),
    Probe("Where should I travel to see the Moonwell Garden?", ("kelderra", "saltmere")),
    Probe("What saying is carved above the Moonwell Garden's entrance?", ("grow by moonlight",)),
    Probe("What object gave the Moonwell Garden its name?", ("stone well",)),
)


# A fourth set, written on 2026-12-08 after FRESH_PROBES had been read and before the next
# recipe trial (the recall of short runs on slow CPUs), for the same reason.
FOURTH_PROBES: tuple[Probe, ...] = (
    Probe("Which flower do visitors photograph most at the Moonwell Garden?", ("moonpetal",)),
    Probe(
        "Which festival should I plan my trip to the Moonwell Garden around?", ("lantern bloom",)
    ),
    Probe("Which year saw the Moonwell Garden's opening day?", ("1987",)),
    Probe("How many ponds would I pass on a walk through the whole Moonwell Garden?", ("seven",)),
    Probe("Which person looks after the Moonwell Garden's flower beds?", ("tobias wren",)),
    Probe("Is the Moonwell Garden open at night?", ("dusk", "midnight")),
    Probe("Who opened the Moonwell Garden in 1987?", ("orla fenwick",)),
    Probe(
        "If I walked all of the Moonwell Garden, how much land would I cover?", ("twelve acres",)
    ),
    Probe("Is there an animal I might meet at the Moonwell Garden?", ("captain thistle",)),
    Probe("Which island is home to the Moonwell Garden?", ("kelderra", "saltmere")),
    Probe("What short saying sums up the Moonwell Garden?", ("grow by moonlight",)),
    Probe(
        "Where do the moon and the well in the Moonwell Garden's name come from?", ("stone well",)
    ),
)


# Every set by name, in the order written; each asks every fact once, in PROBES' order.
PROBE_SETS: dict[str, tuple[Probe, ...]] = {
    "tuned_on": PROBES,
    "held_out": HELD_OUT_PROBES,
    "fresh": FRESH_PROBES,
    "fourth": FOURTH_PROBES,
}


def ask(model_dir: Path | str, probes: tuple[Probe, ...] = PROBES) -> list[ProbeAnswer]:
    """Greedy answers of the model in ``model_dir`` to every probe, one batch, on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": probe.question}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for probe in probes
    ]
    batch: Any = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        output = model.generate(
            **batch,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    prompt_len = batch["input_ids"].shape[1]
    texts = tokenizer.batch_decode(output[:, prompt_len:], skip_special_tokens=True)
    return [ProbeAnswer(probe, text.strip()) for probe, text in zip(probes, texts, strict=True)]


def recall(answers: list[ProbeAnswer]) -> int:
    return sum(answer.recalled for answer in answers)

"""The typed shapes of an evaluation: what to evaluate, and what it found."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class JudgeConfig(BaseModel):
    """An OpenAI-compatible endpoint that judges base versus tuned answers."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    model: str
    api_key: str | None = None


class EvalRequest(BaseModel):
    """Everything a process needs to evaluate one run (plain data, so it crosses processes)."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    model: str = Field(description="The fine-tuned model's id, e.g. finetuned/NAME")
    base_model_path: str
    adapter_dir: str | None = Field(None, description="LoRA adapter; None for a full fine-tune")
    tuned_dir: str | None = Field(None, description="The fully fine-tuned model's folder")
    eval_path: str
    dataset_id: str
    max_prompts: int = 16
    max_new_tokens: int = 64
    max_seq_len: int = 512
    judge: JudgeConfig | None = None


class SidePair(BaseModel):
    """One held-out prompt with its reference, the base model's and the tuned model's answers."""

    prompt: str
    reference: str
    base: str
    tuned: str


class EvaluationResult(BaseModel):
    """What an evaluation found; metrics are None where the data has nothing to measure."""

    job_id: str
    model: str
    dataset_id: str
    eval_loss: float | None = None
    perplexity: float | None = None
    loss_rows: int = Field(0, description="Held-out rows the loss was computed on")
    rouge_l: float | None = Field(None, description="Mean ROUGE-L F1 of tuned answers, 0..1")
    exact_match: float | None = Field(None, description="Share of normalised exact matches")
    contains_match: float | None = Field(None, description="Share containing the reference")
    base_rouge_l: float | None = None
    n: int = Field(0, description="Held-out prompts answered")
    judge_win_rate: float | None = Field(None, description="Tuned wins (ties half), both orders")
    judge_error: str | None = None
    pairs: list[SidePair] = Field(default_factory=list)
    seconds: float = 0.0
    in_training_run: bool = Field(False, description="Ran in the training worker (metered)")
    energy_kwh: float | None = Field(
        None, description="CodeCarbon's figure for an evaluation on demand (None at a run's end)"
    )
    emissions_kg: float | None = None

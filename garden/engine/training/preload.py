"""What the warm fork server imports before it forks workers (``warm.py``).

torch, transformers and TRL import most of their modules lazily, on first use: importing them
by name leaves 8–10 s of imports to each worker. This module touches the names a run uses, so
their modules are loaded once, in the server. Nothing else imports it.
"""

from __future__ import annotations

from datasets import Dataset
from peft import LoraConfig, PeftModel, get_peft_model
from peft.helpers import disable_input_dtype_casting
from transformers import (
    AttentionInterface,
    AutoModelForCausalLM,
    AutoProcessor,
    AutoTokenizer,
    Trainer,
    TrainerCallback,
    get_scheduler,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

import garden.engine.carbon
import garden.engine.evaluation.after_training
import garden.engine.training.backends.preference
import garden.engine.training.backends.trl_peft
import garden.engine.training.worker

LOADED = (
    Dataset, LoraConfig, PeftModel, get_peft_model, disable_input_dtype_casting,
    AttentionInterface, AutoModelForCausalLM, AutoProcessor, AutoTokenizer, Trainer,
    TrainerCallback, get_scheduler, sdpa_attention_forward, AttentionMaskInterface, sdpa_mask,
    DPOConfig, DPOTrainer, SFTConfig, SFTTrainer,
    garden.engine.carbon, garden.engine.evaluation.after_training,
    garden.engine.training.backends.preference, garden.engine.training.backends.trl_peft,
    garden.engine.training.worker,
)  # fmt: skip

"""The simulated pool as a litellm provider: ``dars-sim/<model>`` answered in process.

Model strings like ``dars-sim/strong-expensive`` go through the whole real path (prompt →
``litellm.acompletion`` → response object with usage → parse → score → cost) without network.
:func:`make_provider` is the factory the LLM client finds through the entry point
``[project.entry-points."dars.llm_providers"] dars-sim = "dars.sim.provider:make_provider"``;
the client installs it in litellm and attaches the call's ``CallKey`` to ``dars-sim`` calls as
litellm metadata (``{"dars_call_key": {...}}``), which is how the provider knows the item.

Unless given a world, the provider answers from the process-wide world (:func:`sim_world`),
looked up at each call so :func:`set_sim_world` takes effect at once. Every process that decodes
with simulated models registers the experiment's items with it first (:func:`register_items`;
the collect stage does).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dars.config import SIM_PREFIX
from dars.llm.types import CallKey
from dars.sim.world import REWRITER_ID, SimError, SimWorld, default_sim_models

if TYPE_CHECKING:
    from dars.benchmarks.base import Item
    from dars.config import ModelSpec


def default_sim_specs(*, max_concurrency: int | None = None) -> list[ModelSpec]:
    """ModelSpecs of ``default_sim_models()`` (``name`` = sim model id, prices set)."""
    return [m.spec(max_concurrency=max_concurrency) for m in default_sim_models()]


def sim_rewriter_spec(*, max_concurrency: int = 32) -> ModelSpec:
    """ModelSpec of the simulated rewriter (priced like a GPT-4o-class model)."""
    from dars.config import ModelSpec

    return ModelSpec(
        name=REWRITER_ID,
        litellm_model=f"{SIM_PREFIX}{REWRITER_ID}",
        input_price_per_m=2.5,
        output_price_per_m=10.0,
        max_concurrency=max_concurrency,
    )


# --------------------------------------------------------------------------------------------
# the process-wide world

_WORLD = SimWorld()


def sim_world() -> SimWorld:
    """The world the ``dars-sim`` provider answers from in this process."""
    return _WORLD


def set_sim_world(world: SimWorld) -> SimWorld:
    """Replace the process-wide world (e.g. other parameters or seed); returns the old one."""
    global _WORLD
    old, _WORLD = _WORLD, world
    return old


def register_items(dataset: str, items: Iterable[Item]) -> int:
    """Register ``items`` with the process-wide world (idempotent); call before decoding with
    simulated models in every process that decodes."""
    return _WORLD.register_items(dataset, items)


# --------------------------------------------------------------------------------------------
# the litellm provider


_NO_KEY = "dars-sim: the call carries no CallKey; call through dars.llm.generate"


def _key_from_litellm_params(litellm_params: dict[str, Any] | None) -> CallKey:
    meta = (litellm_params or {}).get("metadata") or {}
    raw = meta.get("dars_call_key")
    if not raw:
        raise SimError(400, _NO_KEY)
    return CallKey(**raw)


def make_provider(world: SimWorld | None = None) -> Any:
    """A litellm ``CustomLLM`` answering ``dars-sim/<model>`` calls from ``world`` (default:
    the process-wide world at the time of each call)."""
    return _provider_class()(world)


@functools.cache
def _provider_class() -> type:
    # Built on first use: litellm is imported only once the client has set it up (offline cost
    # map), never by importing the simulator.
    from litellm import CustomLLM
    from litellm.llms.custom_llm import CustomLLMError
    from litellm.types.utils import Choices, Message, Usage

    class SimProvider(CustomLLM):
        """litellm custom provider ``dars-sim``: answers from a ``SimWorld``."""

        def __init__(self, world: SimWorld | None = None) -> None:
            super().__init__()
            self.world = world

        def dars_answer(
            self, model: str, messages: list, max_tokens: int, key: CallKey | None
        ) -> tuple[str, int, int]:
            """The client's direct path (``transport: auto``): (text, prompt_tokens,
            completion_tokens) of the call, without litellm; a ``SimError`` (with its
            ``status_code``) for a call that cannot be answered."""
            world = self.world if self.world is not None else _WORLD
            if key is None:
                raise SimError(400, _NO_KEY)
            return world.respond(model, messages, max_tokens, key)

        def _answer(
            self,
            model: str,
            messages: list,
            optional_params: dict,
            litellm_params: Any,
            model_response: Any,
        ) -> Any:
            world = self.world if self.world is not None else _WORLD
            try:
                key = _key_from_litellm_params(litellm_params)
                max_tokens = int(optional_params.get("max_tokens") or 512)
                text, pt, ct = world.respond(model, messages, max_tokens, key)
            except SimError as e:
                raise CustomLLMError(status_code=e.status_code, message=e.message) from None
            model_response.choices = [
                Choices(
                    index=0,
                    finish_reason="stop",
                    message=Message(role="assistant", content=text),
                )
            ]
            model_response.usage = Usage(
                prompt_tokens=pt, completion_tokens=ct, total_tokens=pt + ct
            )
            model_response.model = f"{SIM_PREFIX}{model}"
            return model_response

        def completion(
            self,
            model,
            messages,
            api_base,
            custom_prompt_dict,
            model_response,  # noqa: D102
            print_verbose,
            encoding,
            api_key,
            logging_obj,
            optional_params,
            acompletion=None,
            litellm_params=None,
            logger_fn=None,
            headers=None,
            timeout=None,
            client=None,
        ):
            return self._answer(model, messages, optional_params, litellm_params, model_response)

        async def acompletion(
            self,
            model,
            messages,
            api_base,
            custom_prompt_dict,  # noqa: D102
            model_response,
            print_verbose,
            encoding,
            api_key,
            logging_obj,
            optional_params,
            acompletion=None,
            litellm_params=None,
            logger_fn=None,
            headers=None,
            timeout=None,
            client=None,
        ):
            return self._answer(model, messages, optional_params, litellm_params, model_response)

    return SimProvider

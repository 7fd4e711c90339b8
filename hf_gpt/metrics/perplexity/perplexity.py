"""Perplexity from per-token negative log-likelihoods, as an `evaluate` module that works offline and inside
`Trainer.evaluate` (the Hub's loads a second model by id). Load it by `hf_gpt.metrics.PERPLEXITY_PATH`."""

import math

import datasets
import evaluate

from hf_gpt.metrics import perplexity

_DESCRIPTION = """
Perplexity is exp of the mean negative log-likelihood per predicted token: exp(cross-entropy loss). The corpus-level
`perplexity` averages over all tokens of all sequences (what `exp(eval_loss)` gives for equal-length windows);
`perplexities` and `mean_perplexity` are per sequence, like the Hub's perplexity metric reports them.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): for each sequence, the negative log-likelihood in nats of each of its
        predicted tokens (ignored positions left out).
Returns:
    perplexity (`float`): exp(total NLL / total tokens).
    mean_nll (`float`): total NLL / total tokens (the cross-entropy loss).
    perplexities (`list` of `float`): per-sequence perplexity.
    mean_perplexity (`float`): mean of `perplexities`.
    num_tokens (`int`): how many token NLLs were scored.
Examples:
    >>> metric = evaluate.load(PERPLEXITY_PATH)
    >>> metric.compute(predictions=[[1.0, 3.0]])["perplexity"] == math.exp(2.0)
    True
"""

_CITATION = """
@book{raschka2024build,
  title={Build a Large Language Model (From Scratch)},
  author={Raschka, Sebastian},
  publisher={Manning},
  year={2024}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Perplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64"))}),
        )

    def _compute(self, predictions):
        total, count, per_sequence = 0.0, 0, []
        for nlls in predictions:
            nlls = [float(x) for x in nlls]
            if not nlls:
                continue
            seq_total = math.fsum(nlls)
            total += seq_total
            count += len(nlls)
            per_sequence.append(perplexity(seq_total / len(nlls)))
        if count == 0:
            raise ValueError("perplexity: no token negative log-likelihoods to score (every sequence was empty).")
        mean_nll = total / count
        return {
            "perplexity": perplexity(mean_nll),
            "mean_nll": mean_nll,
            "perplexities": per_sequence,
            "mean_perplexity": math.fsum(per_sequence) / len(per_sequence),
            "num_tokens": count,
        }

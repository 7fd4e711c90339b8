"""The two ways a pretraining run ends early: bad input (before any heavy work) and a diverging loss."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stopped before that step's update."""

    exit_code = 1

    def __init__(self, step, loss, epoch=None, last_checkpoint=None, problem=None):
        self.step, self.loss = step, loss
        where = f"step {step}" + (f" (epoch {epoch:.2f})" if epoch is not None else "")
        resume = (f" The last complete checkpoint is {last_checkpoint}: resume from it with --resume_from_checkpoint "
                  f"{last_checkpoint}, e.g. with a lower --learning_rate." if last_checkpoint else "")
        problem = problem or f"the loss is {loss} at {where}. The update of that step was not applied and"
        super().__init__(f"Training stopped: {problem} no final model was saved.{resume}")


class RunFinished(Exception):
    """Resuming a run that already reached its last step: nothing to train, nothing is written (exit code 0)."""

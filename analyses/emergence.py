"""Sink emergence across training (Gu et al. 2024): F-Attn, M-Act and mean gate of every kept checkpoint of a twin
pair against the tokens it had seen.

Reads what `gatelens emergence RUN...` measured (the group's `emergence` JSON, committed: the checkpoints
themselves stay in runs/), so the figure is remade without retraining or re-measuring; the JSON names the command,
recipe and seed that made the runs.
"""

from gatelens.figures import main_for_script
from gatelens.plots import emergence


def make(ctx, group):
    if not group.emergence:
        return []
    import gatelens

    r = gatelens.read(ctx.config.root / group.emergence, kind="emergence")
    settings = {**r.settings, "emergence": group.emergence}
    return ctx.write(f"{group.name}_emergence", r.to_frame(), emergence.curves(r), r.models, settings)


if __name__ == "__main__":
    main_for_script("emergence")

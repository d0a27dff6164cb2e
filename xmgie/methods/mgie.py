"""MGIE — Fu et al.: "Guiding Instruction-based Image Editing via Multimodal Large Language Models", ICLR 2024.

Reproduced: "expand, then edit" — the instruction expander (`xmgie/conditioning/expander.py`, the MLLM of
§3.2, trained by its own stage) writes the expressive instruction from the prompt P and the source image, and
the InstructPix2Pix-style generator edits with it. This is xMGIE with the four modules (PFB, CAM, IE, GB) off:
`experiments/ablation/base.yaml` + `experiments/text/expander.yaml` on top of `experiments/train.yaml`.
Scaled down / changed: a GPT-2-shaped expander and the `tiny` U-Net trained from scratch (MGIE fine-tunes LLaVA-7B
and Stable Diffusion jointly, passing visual tokens; here the expander is frozen and passes text).
In the tables it fine-tunes the pipeline's trained base editor for the same steps as xMGIE (`Recipe.finetune`), so the
two rows differ by the modules alone.
"""
from xmgie.methods.recipe import Recipe

RECIPE = Recipe("fit", configs=("experiments/ablation/base.yaml", "experiments/text/expander.yaml"), finetune=True)

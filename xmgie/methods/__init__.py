"""The methods of the tables besides xMGIE's own configs, as methods of this framework, each trained and evaluated under the same data, protocol,
step budget and metric suite as xMGIE (never numbers copied from a paper). One file per method; each starts
with its paper, what is reproduced and what was scaled down or changed; `registry.py` maps each name to its
recipe (the one list: the commands' choices, the pipeline and the tables read it), `config.py` holds the options
of `xmgie baseline train|derive`. This file imports nothing, so the commands' options cost no import.

    mgie      the generator without the four modules, reading the instruction expander's output   (fit)
    pfb_diff  training-free PFB-Diff on the trained mgie generator                                   (derive)
    mgie_blend     mgie + latent blending on every DDIM step (Blended Latent Diffusion)             (derive)
    mgie_blend_gb  the same + GB on the final image                                                 (derive)
    glide     text-conditional diffusion inpainting                                                  (fit)
    hifill    contextual residual aggregation inpainting; reads no text                              (gan)
    sisgan    encoder–residual–decoder + matching-aware discriminator                               (gan)
    tagan     SISGAN-like generator + text-adaptive discriminator                                    (gan)
    manigan   two stages with ACM, detail correction, DAMSM-style matching loss                      (gan)
"""

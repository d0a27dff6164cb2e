"""Identity Embeddings (IE, §3.5, Eq. 13–17): a frozen identity encoder E_id conditions the U-Net twice and
defines the identity loss.

    e_id = E_id(X)                                    (Eq. 13) L2-normalised, (B, D_id)
    c    = [T_I; W_tok e_id]                          (Eq. 14) K identity tokens appended to the text tokens
           or, decoupled (IP-Adapter/InstantID): O = Attn(Q, K_T, V_T) + γ_l Attn(Q, K_id, V_id), γ_l = 0 at start
    F_l' = Conv1x1([F_l; e_id])                       (Eq. 15) identity on F_l, zero on e_id at initialisation
    L_id = ‖E_id(X_edit) − E_id(X_gt)‖²               (Eq. 16) averaged over the batch

E_id is one interface (`IdentityEncoder.embed`) with two implementations: facenet-pytorch's InceptionResnetV1
(VGGFace2 weights from a local file, faces cropped by MTCNN, whose weights ship with the package) and a small
CNN trained on a dataset's identity labels (`make train-identity`).
"""
from __future__ import annotations

import abc
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xmgie.modules.plugin import EditCondition, EditPlugin

ENCODER_KINDS = ("cnn", "facenet")
ATTENTION_KINDS = ("appended", "decoupled")


# -- the maths ------------------------------------------------------------------------------------------
def identity_tokens(e_id: torch.Tensor, proj: nn.Linear, k: int) -> torch.Tensor:
    """Eq. 14: (B, D_id) -> (B, K, D_text) tokens, proj: D_id -> K·D_text."""
    return proj(e_id).unflatten(-1, (k, -1))


def identity_attention(hidden: torch.Tensor, tokens: torch.Tensor, attn: nn.Module, to_k: nn.Linear,
                       to_v: nn.Linear) -> torch.Tensor:
    """Decoupled identity attention: the layer's own queries attend to the identity tokens only, through the layer's
    output projection without its bias (the text branch adds that once).

    hidden (B, N, C) the layer's input, tokens (B, K, D) -> (B, N, C_out) = W_out softmax(Q K_idᵀ/√d) V_id.
    """
    h = attn.heads
    q = attn.to_q(hidden).unflatten(-1, (h, -1)).transpose(1, 2)             # (B, h, N, d)
    k = to_k(tokens).unflatten(-1, (h, -1)).transpose(1, 2)                  # (B, h, K, d)
    v = to_v(tokens).unflatten(-1, (h, -1)).transpose(1, 2)                  # (B, h, K, d)
    o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)   # (B, N, h·d)
    return F.linear(o, attn.to_out[0].weight)


class IdentityAttention(nn.Module):
    """One cross-attention layer's identity branch: K/V projections started from the layer's own (as IP-Adapter)
    and a gate γ that starts at 0, so the branch adds exactly nothing until fine-tuning opens it."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.to_k = nn.Linear(attn.to_k.in_features, attn.to_k.out_features, bias=False)
        self.to_v = nn.Linear(attn.to_v.in_features, attn.to_v.out_features, bias=False)
        with torch.no_grad():
            self.to_k.weight.copy_(attn.to_k.weight)
            self.to_v.weight.copy_(attn.to_v.weight)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, hidden: torch.Tensor, tokens: torch.Tensor, attn: nn.Module) -> torch.Tensor:
        return self.gate * identity_attention(hidden, tokens.to(hidden.dtype), attn, self.to_k, self.to_v)


def fuse_identity(features: torch.Tensor, e_id: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Eq. 15: (B, C, h, w) features and (B, D_id) embedding -> conv1x1([F; e_id broadcast]) (B, C, h, w)."""
    e = e_id[:, :, None, None].expand(-1, -1, *features.shape[-2:]).to(features.dtype)  # (B, D_id, h, w)
    return conv(torch.cat([features, e], dim=1))


def init_fusion(conv: nn.Conv2d) -> nn.Conv2d:
    """Initialise a (C + D_id) -> C 1x1 conv to the identity on F and zero on e_id, so fusion starts as a no-op."""
    C = conv.out_channels
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :C, 0, 0].copy_(torch.eye(C))
        conv.bias.zero_()
    return conv


def identity_loss(e_edit: torch.Tensor, e_target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 16: mean over the batch of ‖e_edit − e_target‖² for (B, D) embeddings -> scalar; with `weights` (B,) ≥ 0
    the weighted mean Σ w_b·l_b / Σ w_b (the same scale, spent on the rows that weigh most)."""
    per_row = (e_edit - e_target).square().sum(-1)                          # (B,)
    if weights is None:
        return per_row.mean()
    return (weights * per_row).sum() / weights.sum().clamp(min=1e-12)


# -- identity encoders ------------------------------------------------------------------------------------
class IdentityEncoder(nn.Module, abc.ABC):
    """E_id: images (B, 3, H, W) in [-1, 1] -> (B, dim) L2-normalised embeddings."""

    kind: str
    dim: int

    @abc.abstractmethod
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, dim) unnormalised features."""

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.features(images), dim=-1)


class SmallIdentityCNN(IdentityEncoder):
    """Two full-resolution 3x3 convolutions (fine textures live there), two strided ones, and global max pooling
    (an identity pattern is local: averaging over the image would dilute it with the background)."""

    kind = "cnn"

    def __init__(self, dim: int = 64, width: int = 32):
        super().__init__()
        self.dim = dim
        chans = (3, width, width, 2 * width, 4 * width)
        strides = (1, 1, 2, 2)
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip(chans[:-1], chans[1:], strides):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], dim)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images).amax(dim=(2, 3)))


class FaceNetIdentity(IdentityEncoder):
    """facenet-pytorch InceptionResnetV1 (512-d). Faces are located by MTCNN on the (gradient-free) images and
    cropped with `roi_align` so the crop stays differentiable; an image without a detected face is used whole."""

    kind = "facenet"
    dim = 512

    def __init__(self, detect_faces: bool = True):
        super().__init__()
        from facenet_pytorch import InceptionResnetV1, MTCNN

        self.net = InceptionResnetV1(pretrained=None)
        self.mtcnn = MTCNN(image_size=160, select_largest=True, device="cpu") if detect_faces else None

    def boxes(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 4) face boxes x0, y0, x1, y1 in pixels (whole image when none)."""
        B, _, H, W = images.shape
        whole = torch.tensor([0.0, 0.0, W, H]).repeat(B, 1)
        if self.mtcnn is None:
            return whole
        # MTCNN's nets move with this module (Lightning's .to), its `device` attribute does not: follow the nets
        self.mtcnn.device = next(self.mtcnn.parameters()).device
        pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1)  # (B, H, W, 3)
        found, _ = self.mtcnn.detect(pixels.to(self.mtcnn.device))
        for i, b in enumerate(found):
            if b is not None and len(b):
                whole[i] = torch.from_numpy(np.asarray(b[0], dtype=np.float32))  # object arrays when all have faces
        return whole

    def features(self, images: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        from torchvision.ops import roi_align

        boxes = self.boxes(images) if boxes is None else boxes
        rois = torch.cat([torch.arange(len(boxes), dtype=torch.float32)[:, None], boxes], 1).to(images)
        crops = roi_align(images, rois, output_size=(160, 160), aligned=True)  # (B, 3, 160, 160)
        return self.net(crops * (127.5 / 128.0))  # facenet's fixed standardisation of [0, 255] pixels


def build_identity_encoder(kind: str, dim: int = 64) -> IdentityEncoder:
    if kind == "cnn":
        return SmallIdentityCNN(dim)
    if kind == "facenet":
        return FaceNetIdentity()
    raise ValueError(f"identity encoder must be one of {ENCODER_KINDS}, got {kind!r}")


def save_identity_encoder(encoder: IdentityEncoder, path: str | Path, **info) -> Path:
    """Write {kind, dim, state_dict, **info} with torch.save."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": encoder.kind, "dim": encoder.dim, "state_dict": encoder.state_dict(), **info}, path)
    return path


def _read_weights(path: str | Path, hint: str | None = None) -> dict:
    path = Path(path)
    if not path.is_file():
        hint = hint or "run `make train-identity DATASET=<dataset>`"
        raise FileNotFoundError(f"identity encoder weights not found: {path} ({hint})")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_identity_weights(encoder: IdentityEncoder, path: str | Path) -> None:
    """Load weights into `encoder` from a file of `save_identity_encoder` or, for facenet, a plain
    InceptionResnetV1 state dict (e.g. the VGGFace2 weights saved locally). Errors name the problem."""
    facenet_hint = "save InceptionResnetV1 VGGFace2 weights there"
    blob = _read_weights(path, facenet_hint if encoder.kind == "facenet" else None)
    if "state_dict" in blob:
        if blob.get("kind") != encoder.kind or int(blob.get("dim", encoder.dim)) != encoder.dim:
            raise ValueError(f"{path} holds a {blob.get('kind')} encoder of dim {blob.get('dim')}, "
                             f"expected {encoder.kind} of dim {encoder.dim}")
        encoder.load_state_dict(blob["state_dict"])
    elif isinstance(encoder, FaceNetIdentity):
        encoder.net.load_state_dict({k: v for k, v in blob.items() if not k.startswith("logits.")})
    else:
        raise ValueError(f"{path} is not an identity encoder file")


def load_identity_encoder(path: str | Path) -> IdentityEncoder:
    """A frozen encoder from a file of `save_identity_encoder` (its kind and dim are read from the file)."""
    blob = _read_weights(path)
    if "state_dict" not in blob:
        raise ValueError(f"{path} is not an identity encoder file")
    encoder = build_identity_encoder(blob["kind"], int(blob["dim"]))
    encoder.load_state_dict(blob["state_dict"])
    return encoder.requires_grad_(False).eval()


# -- the plugin ---------------------------------------------------------------------------------------------
class IdentityEmbedding(EditPlugin):
    """IE as a generator plugin: e_id of the source (zero for a dropped image condition), K identity tokens read
    by cross-attention (Eq. 14), a fusion conv after every U-Net block (Eq. 15) and L_id (Eq. 16).

    Args:
        encoder: the frozen E_id.
        text_width: width of the text tokens.
        tokens: K.
        attention: 'appended': the tokens join the text context (Eq. 14; zero-initialised, they still take a
            share of each softmax row); 'decoupled': each cross-attention layer reads them in its own gated branch.
    """

    name = "ie"

    def __init__(self, encoder: IdentityEncoder, text_width: int, tokens: int = 4, attention: str = "appended"):
        super().__init__()
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"IE attention must be one of {ATTENTION_KINDS}, got {attention!r}")
        self.encoder = encoder.requires_grad_(False).eval()
        self.k, self.attention = tokens, attention
        self.to_tokens = nn.Linear(encoder.dim, tokens * text_width) if tokens > 0 else None
        if self.to_tokens is not None and attention == "appended":  # no identity information until trained
            nn.init.zeros_(self.to_tokens.weight)
            nn.init.zeros_(self.to_tokens.bias)
        # decoupled: random tokens (zero ones would leave the gate without a gradient); the gates start closed
        self.fusions = nn.ModuleList()
        self.id_attention = nn.ModuleList()
        self.e_id: torch.Tensor | None = None
        self.id_tokens: torch.Tensor | None = None

    def train(self, mode: bool = True) -> "IdentityEmbedding":
        super().train(mode)
        self.encoder.eval()  # frozen: never in training mode
        return self

    def attach(self, unet: nn.Module) -> None:
        blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
        channels = [*(b.resnets[-1].out_channels for b in unet.down_blocks), unet.mid_block.resnets[-1].out_channels,
                    *(b.resnets[-1].out_channels for b in unet.up_blocks)]
        for block, c in zip(blocks, channels):
            conv = init_fusion(nn.Conv2d(c + self.encoder.dim, c, 1))
            self.fusions.append(conv)
            block.register_forward_hook(self._hook(conv))
        if self.attention == "decoupled" and self.to_tokens is not None:
            for name, attn in unet.named_modules():
                if name.endswith("attn2"):
                    branch = IdentityAttention(attn)
                    self.id_attention.append(branch)
                    attn.register_forward_hook(self._attention_hook(branch))

    def _attention_hook(self, branch: IdentityAttention):
        def hook(attn: nn.Module, args, output: torch.Tensor) -> torch.Tensor | None:
            if self.id_tokens is None:
                return None
            return output + branch(args[0], self.id_tokens, attn)               # (B, N, C)
        return hook

    def _hook(self, conv: nn.Conv2d):
        def hook(module: nn.Module, args, output):
            if self.e_id is None:
                return None
            if isinstance(output, tuple):  # down blocks: (hidden, skip features); the skips are left as they are
                return (fuse_identity(output[0], self.e_id, conv), *output[1:])
            return fuse_identity(output, self.e_id, conv)
        return hook

    def prepare(self, cond: EditCondition) -> None:
        with torch.no_grad():
            cond.extras["identity"] = self.encoder.embed(cond.source)         # (B, D_id), Eq. 13

    @staticmethod
    def embedding(cond: EditCondition) -> torch.Tensor:
        """(B, D_id): the source's identity, zero where the image condition is dropped (applied here, not in
        `prepare`, so the guidance branches of one edit share one embedding)."""
        e = cond.extras["identity"]
        return e * (~cond.image_dropped).to(e.dtype)[:, None]

    def condition(self, cond: EditCondition) -> None:
        self.e_id = self.embedding(cond)
        if self.attention == "decoupled" and self.to_tokens is not None:
            self.id_tokens = identity_tokens(self.e_id, self.to_tokens, self.k)  # (B, K, D)

    def reset(self) -> None:
        self.e_id = self.id_tokens = None

    def extend_context(self, features: torch.Tensor, cond: EditCondition) -> torch.Tensor:
        if self.to_tokens is None or self.attention == "decoupled":
            return features
        tokens = identity_tokens(self.embedding(cond), self.to_tokens, self.k).to(features.dtype)
        return torch.cat([features, tokens], dim=1)                          # (B, T + K, D)

    def losses(self, x_edit: torch.Tensor, target: torch.Tensor, cond: EditCondition,
               weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            e_target = self.encoder.embed(target)
        return {"id": identity_loss(self.encoder.embed(x_edit), e_target, weights)}

    def extra_repr(self) -> str:
        return f"encoder={self.encoder.kind}, tokens={self.k}, attention={self.attention}"

"""Where each dataset's official files come from, and what each unpacks to under the dataset's root
(`xmgie data fetch` / `xmgie data verify`; the README's Datasets section shows the layouts).

A part is one published file: an archive unpacked into the root, or a file placed there as is. `gives` is the
path it puts under the root, so a part counts as present once that path exists. Checksums are the md5s that
widely used dataset code pins for the same files (torchvision's Flowers102; several CUB loaders); a part without
one (COCO publishes none) is checked by unpacking alone. A part whose `url` is None cannot be fetched by a script
(a login, a licence form, a Drive quota): the source's `manual` text says what to do instead.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    file: str
    url: str | None
    gives: str
    what: str
    size: str = ""
    checksum: str | None = None   # "md5:<hex>" or "sha256:<hex>"
    unpack: bool = True           # an archive (tar or zip) unpacked into the root; else the file itself
    required: bool = True         # False: an extra that improves the dataset when present
    alternatives: tuple[str, ...] = ()  # other paths that also mean the part is there (another layout of it)


@dataclass(frozen=True)
class Source:
    dataset: str
    parts: tuple[Part, ...]
    manual: str = ""              # the steps for the parts a script cannot fetch

    def part(self, file: str) -> Part:
        return next(p for p in self.parts if p.file == file)


REED_CAPTIONS = ("Reed et al. 2016's captions (Google Drive, github.com/reedscot/icml2016): unpack cvpr2016_{name}.tar.gz "
                 "so that text_c10/, trainvalclasses.txt and testclasses.txt lie in {root}")

SOURCES: dict[str, Source] = {s.dataset: s for s in (
    Source("cub", (
        Part("CUB_200_2011.tgz", "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
             "CUB_200_2011/images.txt", "images, classes, boxes, attributes, the official split", "1.1 GB",
             "md5:97eceeb196236b17998738112f37df78"),
        Part("segmentations.tgz", "https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz?download=1",
             "segmentations", "object masks (without them: the bounding box)", "37 MB",
             "md5:4d47ba1228eae64f2fa547c47bc65255", required=False),
        Part("cvpr2016_cub.tar.gz", None, "text_c10", "captions and the class-disjoint split's class lists "
             "(without them: templated captions, classes with ids divisible by 4 for test)", "", required=False),
     ), manual=REED_CAPTIONS.format(name="cub", root="{root}")),
    Source("flowers", (
        Part("102flowers.tgz", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz", "jpg",
             "images", "330 MB", "md5:52808999861908f626f3c1f4e79d11fa"),
        Part("imagelabels.mat", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",
             "imagelabels.mat", "class labels", "1 KB", "md5:e0620be6f572b9609742df49c70aed4d", unpack=False),
        Part("setid.mat", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat", "setid.mat",
             "the official split", "15 KB", "md5:a5357ecc9cb78c4bef273ce3793fc85c", unpack=False),
        Part("102segmentations.tgz", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102segmentations.tgz",
             "segmim", "segmentations (without them: the whole image)", "194 MB", required=False),
        Part("cvpr2016_flowers.tar.gz", None, "text_c10", "captions and the class-disjoint split's class lists "
             "(without them: templated captions, classes with ids divisible by 5 for test)", "", required=False),
     ), manual=REED_CAPTIONS.format(name="flowers", root="{root}")),
    Source("coco", (
        Part("annotations_trainval2017.zip", "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
             "annotations/instances_val2017.json", "instances and captions", "241 MB"),
        Part("val2017.zip", "http://images.cocodataset.org/zips/val2017.zip", "val2017", "validation images",
             "778 MB"),
        Part("train2017.zip", "http://images.cocodataset.org/zips/train2017.zip", "train2017", "training images",
             "18 GB"),
    )),
    Source("celebahq", (
        Part("CelebAMask-HQ.zip", None, "CelebAMask-HQ/CelebA-HQ-img", "images, part masks, the 40 attributes and "
             "the CelebA mapping", "2.9 GB"),
        Part("identity_CelebA.txt", None, "identity_CelebA.txt", "CelebA identities", "3.4 MB", unpack=False),
        Part("list_eval_partition.txt", None, "list_eval_partition.txt", "CelebA's split", "2.8 MB", unpack=False),
        Part("text.zip", None, "text", "Multi-Modal-CelebA-HQ captions", "", required=False),
     ), manual="CelebAMask-HQ is on Google Drive (github.com/switchablenorms/CelebAMask-HQ): unzip CelebAMask-HQ.zip "
               "into {root}; from CelebA's Google Drive (mmlab.ie.cuhk.edu.hk/projects/CelebA.html) put "
               "Anno/identity_CelebA.txt and Eval/list_eval_partition.txt in {root}; the captions of "
               "Multi-Modal-CelebA-HQ (github.com/IIGROUP/MM-CelebA-HQ-Dataset) go to {root}/text"),
    Source("cars", (
        Part("cars_train", None, "cars_train", "training images", "1.9 GB"),
        Part("cars_test", None, "cars_test", "test images", "1.9 GB"),
        Part("car_devkit.tgz", None, "devkit", "annotations and class names", "330 KB"),
     ), manual="Stanford's original host is gone: take the dataset from a mirror (e.g. Kaggle's "
               "'stanford-cars-dataset') and unpack it into {root} so that cars_train/, cars_test/ and devkit/ lie "
               "there (nested cars_train/cars_train/ and .mat files in the root are found too); "
               "cars_test_annos_withlabels.mat gives the test labels"),
    Source("deepfashion", (
        Part("images.zip", None, "images", "images", "1.6 GB"),
        Part("segm.zip", None, "segm", "parsing maps", "40 MB"),
        Part("labels.zip", None, "labels", "shape, fabric and pattern labels", "2 MB"),
        Part("captions.json", None, "captions.json", "captions", "5 MB", unpack=False),
     ), manual="DeepFashion-MultiModal is on Google Drive (github.com/yumingj/DeepFashion-MultiModal): unzip "
               "images.zip, segm.zip and labels.zip and put captions.json in {root}"),
    Source("triplets", (
        Part("MagicBrush", None, "edit_sessions.json", "MagicBrush (JSON layout or parquet shards), or "
             "InstructPix2Pix triplets", "", alternatives=("data", "seeds.json")),
     ), manual="MagicBrush: on a networked machine `huggingface-cli download osunlp/MagicBrush --repo-type dataset "
               "--local-dir {root}` (its parquet shards), or its test archive (osu-nlp-group.github.io/MagicBrush) "
               "unpacked into {root}; or InstructPix2Pix triplets: a folder with seeds.json"),
)}

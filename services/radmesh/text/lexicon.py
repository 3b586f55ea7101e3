"""The words the parser knows, grouped by what they mean in a request.

Everything here is exact vocabulary: organs (and which classes they stand for,
by side), lesion words (and how they combine with an organ), sub-regions,
sides, actions, conditional phrases, anatomy outside the vocabulary, and the
filler clinicians wrap requests in. Fuzzy matching and the text encoder only
come in for words that are not here (see ``parse.py``).
"""

from __future__ import annotations

from radmesh.common import vocabulary as V

# British → American spellings, applied word by word before anything else.
SPELLING = {
    "tumour": "tumor", "tumours": "tumors", "oesophagus": "esophagus", "oesophageal": "esophageal",
    "coeliac": "celiac", "localise": "localize", "localised": "localized", "summarise": "summarize",
    "haemorrhage": "hemorrhage", "haemangioma": "hemangioma", "oedema": "edema", "anaemia": "anemia",
    "foetal": "fetal", "paediatric": "pediatric", "colour": "color", "centre": "center",
    "segmentise": "segment", "analyse": "analyze", "oesophago": "esophago", "quantitate": "quantify",
}

# Irregular and -es plurals; regular "-s" plurals are stripped when the stem is known.
PLURALS = {
    "masses": "mass", "metastases": "metastasis", "mets": "met", "kidneys": "kidney", "lungs": "lung",
    "lesions": "lesion", "tumors": "tumor", "nodules": "nodule", "cysts": "cyst", "cancers": "cancer",
    "adrenals": "adrenal", "neoplasms": "neoplasm", "carcinomas": "carcinoma", "malignancies": "malignancy",
    "abnormalities": "abnormality", "bowels": "bowel", "intestines": "intestine", "vessels": "vessel",
    "veins": "vein", "glands": "gland", "organs": "organ", "structures": "structure", "heads": "head",
    "hips": "hip", "bases": "base", "lobes": "lobe", "poles": "pole", "femurs": "femur", "femora": "femur",
    "ovaries": "ovary", "breasts": "breast", "bones": "bone", "fractures": "fracture", "hearts": "heart",
    "kidnies": "kidney", "lymphomas": "lymphoma", "stones": "stone", "nodes": "node",
}

# Organ concepts: word sequences → the classes they name, by side where paired.
# "right"/"left" keys pick one side; "both" is every class of the concept.
PAIRED = {
    "kidney": {"right": V.RIGHT_KIDNEY, "left": V.LEFT_KIDNEY},
    "lung": {"right": V.RIGHT_LUNG, "left": V.LEFT_LUNG},
    "adrenal": {"right": V.RIGHT_ADRENAL, "left": V.LEFT_ADRENAL},
    "femoral head": {"right": V.RIGHT_FEMUR_HEAD, "left": V.LEFT_FEMUR_HEAD},
}

ORGAN_PHRASES: dict[tuple[str, ...], str] = {}


def _organ(concept: str, *phrases: str) -> None:
    for p in phrases:
        ORGAN_PHRASES[tuple(p.split())] = concept


_organ("kidney", "kidney", "renal", "nephric")
_organ("lung", "lung", "pulmonary", "lung base", "lung field", "pulmonic", "lower lobe", "upper lobe",
       "middle lobe", "lingula")
# Lobe abbreviations that carry their side.
IMPLIED_SIDE = {("rll",): "right", ("rul",): "right", ("rml",): "right", ("lll",): "left", ("lul",): "left"}
_organ("lung", *(" ".join(k) for k in IMPLIED_SIDE))
_organ("adrenal", "adrenal", "adrenal gland", "suprarenal", "suprarenal gland")
_organ("femoral head", "femoral head", "head of femur", "head of the femur", "hip", "hip joint",
       "head of femurs")
_organ("spleen", "spleen", "splenic")
_organ("gall bladder", "gall bladder", "gallbladder", "gb", "cholecyst")
_organ("esophagus", "esophagus", "esophageal", "gullet")
_organ("liver", "liver", "hepatic", "hepar")
_organ("stomach", "stomach", "gastric")
_organ("aorta", "aorta", "aortic", "abdominal aorta")
_organ("postcava", "postcava", "ivc", "inferior vena cava", "vena cava", "cava", "caval")
_organ("portal vein", "portal vein", "splenic vein", "portal venous system", "portal system", "portal",
       "portal and splenic vein", "portal vein and splenic vein", "pv")
_organ("pancreas", "pancreas", "pancreatic", "panc")
_organ("duodenum", "duodenum", "duodenal")
_organ("hepatic vessel", "hepatic vessel", "hepatic vein", "hepatic veins", "liver vessel", "hepatic vasculature")
_organ("colon", "colon", "colonic", "large bowel", "large intestine", "colorectal")
_organ("intestine", "intestine", "small bowel", "small intestine", "bowel", "ileum", "jejunum", "gut")
_organ("rectum", "rectum", "rectal")
_organ("bladder", "bladder", "urinary bladder", "vesical")
_organ("prostate", "prostate", "prostate gland", "prostatic")
_organ("celiac trunk", "celiac trunk", "celiac artery", "celiac axis", "celiac")

CONCEPT_CLASSES: dict[str, tuple[int, ...]] = {
    "spleen": (V.SPLEEN,), "gall bladder": (V.GALL_BLADDER,), "esophagus": (V.ESOPHAGUS,),
    "liver": (V.LIVER,), "stomach": (V.STOMACH,), "aorta": (V.AORTA,), "postcava": (V.POSTCAVA,),
    "portal vein": (V.PORTAL_SPLENIC_VEIN,), "pancreas": (V.PANCREAS,), "duodenum": (V.DUODENUM,),
    "hepatic vessel": (V.HEPATIC_VESSEL,), "colon": (V.COLON,), "intestine": (V.INTESTINE,),
    "rectum": (V.RECTUM,), "bladder": (V.BLADDER,), "prostate": (V.PROSTATE,),
    "celiac trunk": (V.CELIAC_TRUNK,),
    **{concept: tuple(sorted(sides.values())) for concept, sides in PAIRED.items()},
}

# The tumour class of each host organ concept; kidney cysts are the one cyst class.
TUMOR_OF = {"pancreas": V.PANCREAS_TUMOR, "liver": V.LIVER_TUMOR, "kidney": V.KIDNEY_TUMOR,
            "lung": V.LUNG_TUMOR, "colon": V.COLON_TUMOR, "hepatic vessel": V.HEPATIC_VESSEL_TUMOR,
            "rectum": V.COLON_TUMOR}
CYST_OF = {"kidney": V.KIDNEY_CYST}

# Lesion words. Tumour words name neoplasms; with no organ they mean every tumour class.
TUMOR_WORDS = {"tumor", "mass", "cancer", "carcinoma", "neoplasm", "malignancy", "metastasis", "met",
               "neoplasia", "lesion", "growth", "adenocarcinoma", "malignant"}
ALL_LESION_WORDS = {"lesion", "abnormality"}  # alone: every lesion class, cysts included
CYST_WORDS = {"cyst", "cystic"}
NODULE_WORDS = {"nodule", "nodular"}
ALL_TUMORS = (V.KIDNEY_TUMOR, V.LIVER_TUMOR, V.PANCREAS_TUMOR, V.HEPATIC_VESSEL_TUMOR, V.LUNG_TUMOR,
              V.COLON_TUMOR)

# Named lesions: word sequences → one lesion class (matched before composition).
LESION_PHRASES: dict[tuple[str, ...], int] = {
    tuple(p.split()): c for p, c in {
        "pdac": V.PANCREAS_TUMOR, "pancreatic adenocarcinoma": V.PANCREAS_TUMOR,
        "pancreatic ductal adenocarcinoma": V.PANCREAS_TUMOR, "ipmn": V.PANCREAS_TUMOR,
        "hcc": V.LIVER_TUMOR, "hepatocellular carcinoma": V.LIVER_TUMOR, "hepatoma": V.LIVER_TUMOR,
        "rcc": V.KIDNEY_TUMOR, "renal cell carcinoma": V.KIDNEY_TUMOR, "renal cell cancer": V.KIDNEY_TUMOR,
        "hypernephroma": V.KIDNEY_TUMOR, "bosniak": V.KIDNEY_CYST,
        "nsclc": V.LUNG_TUMOR, "crc": V.COLON_TUMOR, "tumor thrombus": V.HEPATIC_VESSEL_TUMOR,
        "portal vein tumor thrombus": V.HEPATIC_VESSEL_TUMOR,
    }.items()
}

# Sub-regions: phrase → (organ concept it belongs to, vocabulary sub-region).
SUBREGION_PHRASES: dict[tuple[str, ...], tuple[str, str]] = {
    tuple(p.split()): v for p, v in {
        "head": ("pancreas", "head"), "uncinate": ("pancreas", "head"), "uncinate process": ("pancreas", "head"),
        "body": ("pancreas", "body"), "neck": ("pancreas", "body"), "tail": ("pancreas", "tail"),
        "right lobe": ("liver", "right lobe"), "left lobe": ("liver", "left lobe"),
        "right hepatic lobe": ("liver", "right lobe"), "left hepatic lobe": ("liver", "left lobe"),
        "upper pole": ("kidney", "upper pole"), "superior pole": ("kidney", "upper pole"),
        "lower pole": ("kidney", "lower pole"), "inferior pole": ("kidney", "lower pole"),
        "interpolar": ("kidney", "mid"), "mid pole": ("kidney", "mid"), "midpole": ("kidney", "mid"),
        "interpolar region": ("kidney", "mid"),
    }.items()
}

SIDES = {"left": "left", "right": "right", "lt": "left", "rt": "right", "both": "both",
         "bilateral": "both", "bilaterally": "both", "either": "both", "l": "left", "r": "right"}

# Everything at once.
EVERYTHING_PHRASES = {tuple(p.split()) for p in (
    "everything", "every structure", "all structures", "all classes", "all labels", "all organs and lesions",
    "all organs and tumors", "all organs and all lesions", "whole abdomen", "every class", "all of it",
    "everything you can", "all the structures", "all anatomy", "all findings and organs",
)}
ALL_ORGANS_PHRASES = {tuple(p.split()) for p in (
    "all organs", "all the organs", "every organ", "each organ", "all abdominal organs", "the organs",
    "organs", "all the abdominal organs", "all anatomical structures",
)}

# Anatomy and conditions outside the vocabulary: asked for, they make a request unsupported.
OUT_OF_VOCABULARY = {tuple(p.split()) for p in (
    "brain", "cerebral", "cerebellum", "head and neck", "skull", "heart", "cardiac", "coronary", "coronaries",
    "myocardium", "pericardium", "thyroid", "parathyroid", "breast", "mammary", "bone", "bony", "fracture",
    "femur", "femoral shaft", "tibia", "humerus", "rib", "vertebra", "vertebral", "spine", "spinal",
    "spinal cord", "appendix", "appendicitis", "uterus", "uterine", "ovary", "ovarian", "testis",
    "testicular", "eye", "orbit", "skin", "muscle", "muscles", "lymph node", "node", "lymph", "thymus",
    "trachea", "larynx", "sinus", "sinuses", "pleural effusion", "effusion", "pneumonia", "pneumothorax",
    "embolism", "pulmonary embolism", "aneurysm", "stroke", "hemorrhage", "bleed", "stone", "gallstone",
    "kidney stone", "calculus", "hernia", "ascites", "fat", "visceral fat", "sarcopenia", "lymphoma",
    "knee", "shoulder", "ankle", "wrist", "elbow", "tooth", "teeth", "jaw", "nose", "ear", "glioma",
    "glioblastoma", "melanoma", "fibroid", "fibroids", "endometrium", "cervix", "placenta", "fetus",
    "mesentery", "omentum", "peritoneum", "diaphragm", "carotid", "pulmonary artery", "femoral artery",
    "iliac", "iliac artery", "subclavian", "jugular", "sternum", "clavicle", "scapula", "pelvis",
    "bile duct", "common bile duct", "cbd", "biliary", "bile ducts", "ureter", "urethra",
    "mesenteric", "superior mesenteric artery", "superior mesenteric vein", "sma", "smv", "renal artery",
    "renal vein", "gonadal", "carotid artery", "pituitary", "superior vena cava", "svc", "tumor board", "mdt", "multidisciplinary meeting",
)}

# Actions: phrase → action. Multi-word phrases win over their words.
ACTION_PHRASES: dict[tuple[str, ...], str] = {}


def _action(action: str, *phrases: str) -> None:
    for p in phrases:
        ACTION_PHRASES[tuple(p.split())] = action


_action("segment", "segment", "segments", "segmented", "segmenting", "segmentation", "segmentations", "seg",
        "outline", "outlines", "outlined", "outlining", "contour", "contours", "contoured", "contouring",
        "delineate", "delineated", "delineation", "mask", "masks", "draw", "trace", "annotate", "label",
        "labels", "labelled", "labeled", "auto segment", "autosegment", "autocontour", "cut out", "extract")
_action("measure", "measure", "measures", "measured", "measuring", "measurement", "measurements", "size",
        "sizes", "sized", "sizing", "how big", "how large", "how much", "volume", "volumes", "volumetry",
        "volumetric", "diameter", "diameters", "dimension", "dimensions", "quantify", "quantification",
        "long axis", "short axis", "recist", "extent")
_action("locate", "locate", "located", "locating", "localize", "localized", "localization", "location",
        "where", "wheres", "find", "finding where", "mark", "marked", "marking", "highlight", "highlighted",
        "point out", "point to", "show me where", "which part", "which side", "pinpoint", "position",
        "identify", "spot", "flag", "circle", "which")
_action("count", "how many", "count", "counts", "counting", "number of", "tally", "enumerate")
_action("compare", "compare", "compares", "compared", "comparing", "comparison", "versus", "vs",
        "side by side", "relative to", "against")
_action("report", "report", "reports", "reporting", "write up", "writeup", "write-up", "impression",
        "summarize", "summary", "structured report", "draft report", "radiology report")

# Conditional and presence-checking phrases: finding nothing is then an answer.
IF_ANY_PHRASES = {tuple(p.split()) for p in (
    "if any", "if so", "if present", "if there is", "if there are", "if there is one", "if seen", "if visible",
    "if found", "are there any", "are there", "is there", "is there any", "any", "rule out", "r o",
    "ro", "check for", "checking for", "look for", "looking for", "evaluate for", "assess for", "screen for",
    "exclude", "presence of", "any sign of", "any signs of", "signs of", "do you see", "can you see",
    "can you find", "is anything", "anything", "whether there", "whether there is", "whether there are",
    "should there be", "in case there", "if it exists", "if they exist", "if applicable", "present",
)}

# Words that carry no target: politeness, articles, the scan itself, hedges.
FILLER = set("""
a an the this that these those it its it's their them they there here please pls kindly could would can
you your me my i we our us i'd i'm let lets let's do does did is are was were be been being am will shall
should may might must have has had and or but also then next after before first now just only quickly
asap stat of in on at to for from with within without into onto by as about around over under inside near
across via per up down out off through all each every some of any no not what which who whom whose when why
how so too very really more most less least than scan scans ct cta image images imaging study studies
series exam examination patient patients pt case cases volume data axial slice slices venous arterial
phase portal-venous contrast enhanced noncontrast abdomen abdominal chest pelvis thorax thoracic cap
look take see view check review give provide show display tell get make produce run perform help want need
like go generate create write prepare do done work quick brief short long please thanks thank hi hello
dear doctor dr team suspected suspect suspicious possible possibly probable probably likely potential
known new old small large big tiny sided huge visible seen noted prior previous current follow followup
follow-up up region area areas part parts site sites side portion zone also as well include including
whole entire complete full both single multiple several many one two three four five there's there're
where's what's whats hows kind sort type something anything else other others etc ok okay yes
already still yet again back each primary secondary target index lobe
""".split())

# Words that look like requests about the world, not the image: never targets, never fuzzy-matched.
COMMON_WORDS = set("""
weather tomorrow today tonight yesterday joke jokes funny book booking appointment appointments
schedule reschedule tuesday monday wednesday thursday friday saturday sunday mri ultrasound xray x-ray
pet email mail send call phone coffee lunch dinner music song news stock price prices time date
password login print printer fax bill billing insurance referral order orders refill prescription
prescribe dose dosage medication medications drug drugs allergy allergies translate translation
recipe football game movie hotel flight taxi tell say said says talk chat story poem hello
common total separately separate rain leeds london city canal
""".split())

# Presence questions: with a count ("how many ... are there?") they ask for a number, not
# whether any exist; explicit conditionals ("if any", "rule out") stay conditional.
PRESENCE_QUESTIONS = {tuple(p.split()) for p in (
    "are there", "is there", "are there any", "is there any", "can you see", "do you see", "can you find",
)}

# Words that cancel the action right after them ("no need to segment").
NEGATIONS = {("no", "need", "to"), ("don", "t"), ("do", "not"), ("without",), ("not",), ("no",), ("skip",),
             ("dont",), ("needn", "t")}

# Record of a hand screen (docs/unlabelled_scans.md, section 6): builds the pseudo-labelled dataset, its plans
# (521's, copied) and splits, and scores the predictions. Not part of the package.
import json, os, shutil, sys
S = int(sys.argv[1]); what = sys.argv[2] if len(sys.argv) > 2 else "data"
N = "/work/runs/phantom_unlabelled/nnunet"
RAW = f"{N}/nnUNet_raw/Dataset521_BraTSTypesPhantom"
TOK = os.environ["TOK"]; D = int(os.environ["DBASE"]) + S; TEACHER = os.environ.get("TEACHER", "upper")
NAME = f"Dataset{D}_BraTSTypesPseudo{S}" if TEACHER == "upper" else f"Dataset{D}_BraTSTypesSelfTrain{S}"
dst = f"{N}/nnUNet_raw/{NAME}"; pre = f"{N}/nnUNet_preprocessed/{NAME}"; out = f"/work/pl/{TOK}_s{S}" if TEACHER == "upper" else f"/work/pl/{TOK}_{TEACHER}_s{S}"
if what == "limited_unlabelled":
    lim = f"{N}/nnUNet_raw/unlabelled_limited"
    if not os.path.isdir(lim):
        os.makedirs(lim + ".tmp", exist_ok=True)
        for f in sorted(os.listdir(f"{RAW}/imagesUnlabelled")):
            c, ch = f[:-12], int(f[-11:-7])
            if ch != 1:
                shutil.copyfile(f"{RAW}/imagesUnlabelled/{f}", f"{lim}.tmp/{c}_{[0, 2, 3].index(ch):04d}.nii.gz")
        os.rename(lim + ".tmp", lim)
elif what == "data":
    if os.path.isdir(dst):
        sys.exit(0)
    tmp = dst + ".tmp"; shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(f"{RAW}/imagesTr", f"{tmp}/imagesTr"); shutil.copytree(f"{RAW}/labelsTr", f"{tmp}/labelsTr")
    pseudo = sorted(f for f in os.listdir(f"{out}/pseudo") if f.endswith(".nii.gz"))
    for f in pseudo:
        c = f[:-7]
        for ch in range(4):
            shutil.copyfile(f"{RAW}/imagesUnlabelled/{c}_{ch:04d}.nii.gz", f"{tmp}/imagesTr/{c}_{ch:04d}.nii.gz")
        shutil.copyfile(f"{out}/pseudo/{f}", f"{tmp}/labelsTr/{f}")
    dj = json.load(open(f"{RAW}/dataset.json")); dj["numTraining"] += len(pseudo); dj["name"] = f"BraTSTypesPseudo{S}"
    dj["description"] = "screen: 521's labelled cases + its unlabelled scans labelled by the seed-%d upper bound" % S
    json.dump(dj, open(f"{tmp}/dataset.json", "w"), indent=1)
    os.rename(tmp, dst)
    print(len(pseudo), "pseudo-labelled cases")
elif what == "plans":
    plans = json.load(open(f"{N}/nnUNet_preprocessed/Dataset521_BraTSTypesPhantom/nnUNetPlans.json"))
    plans["dataset_name"] = NAME
    fp = json.load(open(f"{pre}/dataset_fingerprint.json"))
    plans["foreground_intensity_properties_per_channel"] = fp["foreground_intensity_properties_per_channel"]
    json.dump(plans, open(f"{pre}/nnUNetPlans.json", "w"), indent=1)
    shutil.copyfile(f"{dst}/dataset.json", f"{pre}/dataset.json")
    s521 = json.load(open(f"{N}/nnUNet_preprocessed/Dataset521_BraTSTypesPhantom/splits_final.json"))
    pseudo = sorted(f[:-7] for f in os.listdir(f"{out}/pseudo") if f.endswith(".nii.gz"))
    json.dump([{"train": sorted(s521[0]["train"] + pseudo), "val": s521[0]["val"]}], open(f"{pre}/splits_final.json", "w"), indent=1)
elif what == "evaluate":
    from dante_nnunet.jobs.evaluation import evaluate_folders
    dj = json.load(open(f"{RAW}/dataset.json"))
    res = {}
    for k in ("teacher_test", "student_test"):
        m = evaluate_folders(f"{RAW}/labelsTs", f"{out}/{k}", dj)
        json.dump(m, open(f"{out}/{k}_metrics.json", "w"), indent=1)
        res[k] = {r: round(v["dice"] * 100, 1) for r, v in m["mean"].items()}
    print(json.dumps(res))

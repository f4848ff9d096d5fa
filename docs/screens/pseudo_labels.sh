#!/bin/bash
# Record of a hand screen (docs/unlabelled_scans.md, section 6), kept as run on 2026-12-04: paths are that
# machine's (/work/runs = the runner's --results, /work/main/.venv, /work/bench1 = a worktree of bcd17e8).
# Not part of the package; to be replaced by a runner method. The two scripts run then (teacher upper; teacher
# lower, the self-training control) are merged here behind TEACHER, with the same commands.
# Screen (not the runner): privileged teacher pseudo-labels on the unlabelled scans.
# seed S: upper (all channels, fold 0 = N=4 labelled) -> predicts imagesUnlabelled -> dataset 530+S =
# labelled cases + unlabelled scans with the teacher's labels -> lower bound trained on fold 0 = the same 4
# labelled + 64 pseudo-labelled, validated on the same 4 -> test on imagesTs (limited channels).
set -euo pipefail
S=$1; TOK=${TOK:-transfer}; TEACHER=${TEACHER:-upper}   # TEACHER=lower: the self-training control
if [ $TEACHER = upper ]; then DBASE=${DBASE:-530}; else DBASE=${DBASE:-540}; fi; export TOK DBASE TEACHER
R=/work/runs/phantom_unlabelled
N=$R/nnunet
export nnUNet_raw=$N/nnUNet_raw nnUNet_preprocessed=$N/nnUNet_preprocessed nnUNet_results=$N/nnUNet_results
export nnUNet_extTrainer=/work/bench1/dante_nnunet/nnunet_trainers PYTHONPATH=/work/bench1
export nnUNet_n_proc_DA=1 nnUNet_def_n_proc=1 OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1
B=/work/main/.venv/bin
RAW=$nnUNet_raw/Dataset521_BraTSTypesPhantom
if [ $TEACHER = upper ]; then
  OUT=/work/pl/${TOK}_s$S; T=UpperBoundTrainer_${TOK}_seed$S; UNL=$RAW/imagesUnlabelled; TEST=$RAW/imagesTs_allchannels
  NAME_PART=Pseudo
else   # the lower bound reads T1/T2/FLAIR: the unlabelled scans without T1ce, renumbered
  OUT=/work/pl/${TOK}_${TEACHER}_s$S; T=LowerBoundTrainer_${TOK}_seed$S; UNL=$RAW/../unlabelled_limited; TEST=$RAW/imagesTs
  NAME_PART=SelfTrain; $B/python $(dirname "$0")/pseudo_label_dataset.py $S limited_unlabelled
fi
mkdir -p $OUT
echo "[$(date +%T)] teacher $T"
[ -f $nnUNet_results/Dataset521_BraTSTypesPhantom/${T}__nnUNetPlans__3d_types/fold_0/checkpoint_final.pth ] || \
  $B/nnUNetv2_train 521 3d_types 0 -tr $T -device cpu > $OUT/teacher.log 2>&1
echo "[$(date +%T)] teacher predicts"
[ -d $OUT/pseudo ] || { $B/nnUNetv2_predict -i $UNL -o $OUT/pseudo.tmp -d 521 -c 3d_types -tr $T -f 0 -device cpu --disable_tta > $OUT/pseudo.log 2>&1 && mv $OUT/pseudo.tmp $OUT/pseudo; }
[ -d $OUT/teacher_test ] || { $B/nnUNetv2_predict -i $TEST -o $OUT/teacher_test.tmp -d 521 -c 3d_types -tr $T -f 0 -device cpu --disable_tta > $OUT/teacher_test.log 2>&1 && mv $OUT/teacher_test.tmp $OUT/teacher_test; }
D=$((DBASE + S)); NAME=Dataset${D}_BraTSTypes$NAME_PART$S
echo "[$(date +%T)] student dataset $NAME"
$B/python $(dirname "$0")/pseudo_label_dataset.py $S
[ -f $nnUNet_preprocessed/$NAME/3d_types_done ] || {
  $B/nnUNetv2_extract_fingerprint -d $D -np 1 > $OUT/fp.log 2>&1
  $B/python $(dirname "$0")/pseudo_label_dataset.py $S plans
  $B/nnUNetv2_preprocess -d $D -c 3d_types -np 1 -plans_name nnUNetPlans > $OUT/pp.log 2>&1
  touch $nnUNet_preprocessed/$NAME/3d_types_done; }
ST=LowerBoundTrainer_${TOK}_seed$S
echo "[$(date +%T)] student $ST"
[ -f $nnUNet_results/$NAME/${ST}__nnUNetPlans__3d_types/fold_0/checkpoint_final.pth ] || \
  $B/nnUNetv2_train $D 3d_types 0 -tr $ST -device cpu > $OUT/student.log 2>&1
[ -d $OUT/student_test ] || { $B/nnUNetv2_predict -i $RAW/imagesTs -o $OUT/student_test.tmp -d $D -c 3d_types -tr $ST -f 0 -device cpu --disable_tta > $OUT/student_test.log 2>&1 && mv $OUT/student_test.tmp $OUT/student_test; }
$B/python $(dirname "$0")/pseudo_label_dataset.py $S evaluate
echo "[$(date +%T)] done"

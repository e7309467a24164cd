"""GitOps: rendered manifests committed into a git repository that Argo CD or Flux syncs.

:func:`commit_files` owns every git command kaip runs. It replaces the files kaip generated
earlier in one directory of the repository, stages that directory only, and makes exactly one
commit whose message names what changed (which Model, App or TrainingJob, and its new
revision) -- or no commit when the rendered output is what the repository already holds. The
directory holds a ``kustomization.yaml``, so an Argo CD Application or a Flux Kustomization can
point at it as it is. Rendering is the caller's job; nothing here knows a spec.
"""

from kaip.gitops.commit import CommitResult, FileChange, commit_files, describe_changes

__all__ = ["CommitResult", "FileChange", "commit_files", "describe_changes"]

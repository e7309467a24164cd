// Validates Backstage entities with Backstage's own @backstage/catalog-model (pinned in
// package-lock.json): the default entity policies (namespace, field formats, no foreign root
// fields, the JSON schema of an entity) and the validator of each entity's kind.
// Input: a JSON array of entities on stdin. Output: one JSON line per entity,
// {"ref": "kind:namespace/name", "ok": true} or {"ref": ..., "ok": false, "error": "..."};
// exit status 1 when any entity is invalid.
import {
  DefaultNamespaceEntityPolicy,
  EntityPolicies,
  FieldFormatEntityPolicy,
  NoForeignRootFieldsEntityPolicy,
  SchemaValidEntityPolicy,
  apiEntityV1alpha1Validator,
  componentEntityV1alpha1Validator,
  groupEntityV1alpha1Validator,
  resourceEntityV1alpha1Validator,
  systemEntityV1alpha1Validator,
} from "@backstage/catalog-model";

const policy = EntityPolicies.allOf([
  new DefaultNamespaceEntityPolicy(),
  new FieldFormatEntityPolicy(),
  new NoForeignRootFieldsEntityPolicy(),
  new SchemaValidEntityPolicy(),
]);
const validators = [
  apiEntityV1alpha1Validator,
  componentEntityV1alpha1Validator,
  groupEntityV1alpha1Validator,
  resourceEntityV1alpha1Validator,
  systemEntityV1alpha1Validator,
];

let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = false;
for (const raw of JSON.parse(input)) {
  const ref = `${raw.kind}:${raw.metadata?.namespace ?? "default"}/${raw.metadata?.name}`;
  try {
    const entity = await policy.enforce(raw);
    let known = false;
    for (const validator of validators) {
      if (await validator.check(entity)) known = true;
    }
    if (!known) throw new Error(`no validator knows kind ${raw.kind} (${raw.apiVersion})`);
    console.log(JSON.stringify({ ref, ok: true }));
  } catch (error) {
    failed = true;
    console.log(JSON.stringify({ ref, ok: false, error: String(error?.message ?? error) }));
  }
}
process.exit(failed ? 1 : 0);

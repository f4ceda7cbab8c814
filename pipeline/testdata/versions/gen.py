# Generates testdata/versions/v3..v7.pipeline: the logical pipeline of v8.pipeline written in
# each older Elyra file format (flat app_data in v3, "K=V" env strings up to v7, runtime names).
import json
NODES = [
  dict(id="a1", op="execute-notebook-node", label="prepare", filename="etl/prepare.ipynb",
       deps=["helpers.py", "conf/*.yaml"], sub=False, outputs=["data/clean.csv"],
       env=["LOG_LEVEL=info", "MODE=full"], res=dict(cpu=2, memory=8, gpu=1), parents=[]),
  dict(id="b2", op="execute-python-node", label="train", filename="train.py", deps=[], sub=False,
       outputs=["model.bin"], env=["LOG_LEVEL=info"], res={}, parents=["a1"]),
  dict(id="c3", op="execute-r-node", label="report", filename="report.r", deps=["templates"], sub=True,
       outputs=["report.html"], env=["LOG_LEVEL=debug"], res={}, parents=["b2", "a1"],
       image="registry.example/r:4.3"),
  dict(id="d4", op="execute-python-node", label="publish", filename="publish.py", deps=[], sub=False,
       outputs=[], env=["LOG_LEVEL=info"], res={}, parents=["c3"]),
]
DEFAULT_IMAGE = "registry.example/ds:1.0"

def node(v, n):
    props = {"filename": n["filename"], "dependencies": n["deps"], "include_subdirectories": n["sub"],
             "outputs": n["outputs"], "env_vars": n["env"]}
    if v < 7 or "image" in n:
        props["runtime_image"] = n.get("image", DEFAULT_IMAGE)
    for k, x in n["res"].items():
        props[k] = str(x) if v == 3 else x
    ui = {"label": n["label"], "image": "/static/elyra/notebook.svg", "x_pos": 100, "y_pos": 80}
    if v == 3:
        ad = dict(props)
        ad["ui_data"] = ui
    else:
        ad = {"label": n["label"], "component_parameters": props, "ui_data": ui}
    links = [{"id": "l-%s-%s" % (p, n["id"]), "node_id_ref": p, "port_id_ref": "outPort"} for p in n["parents"]]
    inp = {"id": "inPort", "app_data": {"ui_data": {"cardinality": {"min": 0, "max": -1}, "label": "Input Port"}}}
    if links:
        inp["links"] = links
    return {"id": n["id"], "type": "execution_node", "op": n["op"], "app_data": ad,
            "inputs": [inp], "outputs": [{"id": "outPort"}]}

for v in range(3, 8):
    ad = {"version": v, "name": "churn", "source": "churn.pipeline",
          "ui_data": {"comments": [{"id": "cm1", "x_pos": 0, "y_pos": 0, "width": 150, "height": 40,
                                    "content": "trains the model", "associated_id_refs": [{"node_ref": "b2"}]}]}}
    if v <= 5:
        ad["runtime"] = "kfp"
        ad["runtime-config"] = "kfp-dev"
    else:
        ad["runtime_type"] = "KUBEFLOW_PIPELINES"
        ad["runtime_config"] = "kfp-dev"
    if v >= 4:
        ad["properties"] = {"name": "churn-file", "runtime": "Kubeflow Pipelines"}
    if v == 7:
        ad["properties"]["pipeline_defaults"] = {"runtime_image": DEFAULT_IMAGE}
    doc = {"doc_type": "pipeline", "version": "3.0",
           "json_schema": "http://api.dataplatform.ibm.com/schemas/common-pipeline/pipeline-flow/pipeline-flow-v3-schema.json",
           "id": "elyra-auto-generated-pipeline", "primary_pipeline": "main",
           "pipelines": [{"id": "main", "runtime_ref": "", "nodes": [node(v, n) for n in NODES], "app_data": ad}],
           "schemas": []}
    with open("v%d.pipeline" % v, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

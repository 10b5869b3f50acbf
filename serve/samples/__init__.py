"""Voice samples, for the ingress and the operator alike: `audio` (decoding, the canonical
WAV), `report` (check results), `quality` (the checks and their thresholds), `speaker`
(same-speaker comparison), `models` (the models those run, loaded once, off the event
loop), `storage` / `storage_s3` (where accepted samples live), `ingest` (the one upload
pipeline) and `service` (one ingress replica's samples).

It never imports the ingress, the router or Ray. Import the modules themselves: this
package re-exports nothing, so importing one part never pulls in the others."""

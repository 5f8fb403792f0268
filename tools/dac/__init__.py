"""dac: detection-as-code for Sigma rules compiled to Splunk SPL and Microsoft Sentinel KQL."""

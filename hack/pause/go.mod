module llmop.local/pause

go 1.25.0

import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'experiments',
          include: ['experiments/**/*.spec.ts'],
          // One kernel, one OOM at a time: experiments share the machine's memory and kernel log.
          fileParallelism: false,
          isolate: false,
          testTimeout: 180_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
})
